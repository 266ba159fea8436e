"""HTTP hosting: uvicorn for the gateway app, the in-process backend, the standalone gateway."""
