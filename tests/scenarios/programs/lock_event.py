"""A plugin registry that waits for a plugin's readiness under its own lock.

``load_plugin`` takes ``registry_lock`` and waits for the plugin thread to
signal ``ready``; the plugin thread, before it can signal, registers its
hooks -- which needs ``registry_lock``. The loader's wait has a timeout:
after it the lock is let go, the plugin finishes late and the program ends.
"""

import sys
import threading

registry_lock = threading.Lock()
hooks: dict[str, str] = {}
ready = threading.Event()


def plugin_main() -> None:
    with registry_lock:  # blocked: the loader holds it while it waits
        hooks["on_request"] = "audit"
    ready.set()


def load_plugin(plugin: threading.Thread) -> bool:
    with registry_lock:
        plugin.start()
        return ready.wait(timeout=2.0)  # the bug: waiting under registry_lock


def main() -> int:
    plugin = threading.Thread(target=plugin_main, name="plugin-audit")
    loaded = load_plugin(plugin)
    plugin.join(timeout=10)  # it registers late, once registry_lock is free
    print("plugin ready in time:", loaded)
    return 0 if loaded else 1


if __name__ == "__main__":
    sys.exit(main())
