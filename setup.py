"""Maps the repository's folders onto the `agentplane` namespace.

The repository is laid out by architecture (server/, gateway/, clients/python/);
installed, everything lives under `agentplane.*`, so no generic top-level name
such as `server` or `clients` lands in site-packages, and the generated
`google` packages stay inside `agentplane.clients.betterproto`.
"""

from setuptools import find_packages, setup

PACKAGE_DIRS = {
    "agentplane.server": "server",
    "agentplane.gateway": "gateway",
    "agentplane.clients": "clients/python",
}


def _packages() -> list[str]:
    packages = []
    for name, folder in PACKAGE_DIRS.items():
        packages.append(name)
        packages.extend(f"{name}.{sub}" for sub in find_packages(folder))
    return packages


setup(
    package_dir=PACKAGE_DIRS,
    packages=_packages(),
    package_data={
        "": ["py.typed", "*.pyi", "*.binpb"],
        # The demo page and the browser client (gateway/demo/ links the
        # module from clients/browser/; the build copies the files).
        "agentplane.gateway.demo": ["*.html", "*.js", "*.d.ts"],
    },
)
