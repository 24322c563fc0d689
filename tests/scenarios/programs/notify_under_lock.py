"""A deadlock through a Condition's lock: notified, but unable to wake up.

The uploader holds ``session_lock`` while it waits on ``slots_free`` for a
free upload slot. The scheduler frees a slot: it takes ``slots_free``'s lock,
notifies -- and, still inside ``with slots_free:``, refreshes the session,
which needs ``session_lock``. The uploader is notified but cannot return
from ``wait()`` without ``slots_free``'s lock, which the scheduler holds
while it waits for the uploader's ``session_lock``. The program hangs until
it is killed.
"""

import threading

session_lock = threading.Lock()
slots_free = threading.Condition()
slots = 0
uploader_waiting = threading.Event()


def take_slot() -> None:
    global slots
    with slots_free:
        uploader_waiting.set()
        while slots == 0:
            slots_free.wait()
        slots -= 1


def upload() -> None:
    with session_lock:
        take_slot()
        print("uploaded")


def schedule() -> None:
    global slots
    uploader_waiting.wait()
    with slots_free:
        slots += 1
        slots_free.notify()
        with session_lock:  # the bug: needs the uploader's lock while holding slots_free
            print("session refreshed")


uploader = threading.Thread(target=upload, name="uploader")
scheduler = threading.Thread(target=schedule, name="scheduler")
uploader.start()
scheduler.start()
print("uploading", flush=True)
