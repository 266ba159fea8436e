"""The test suite (a package, so every folder imports the shared ``tests.support``)."""
