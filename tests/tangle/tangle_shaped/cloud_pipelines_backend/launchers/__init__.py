"""Tangle's launchers: the classes that start, refresh and terminate containers."""
