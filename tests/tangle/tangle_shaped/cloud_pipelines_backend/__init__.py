"""A package shaped like Tangle's ``cloud_pipelines_backend``, with the modules the Tangle
adapter hooks: ``backend_types_sql`` (the execution nodes) and a launcher module. The tests put
it on the path, so that the instrumentation finds and patches it as it would Tangle itself."""
