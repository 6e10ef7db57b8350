"""The composition root for HTTP: mounts every domain's routes, middleware and layouts."""
