"""Five dining philosophers, each taking the left fork then the right one.

The forks are five locks made in one list comprehension. Once every
philosopher holds a left fork, each waits for ever for the right one, held
by the next philosopher: a five-way deadlock. The program hangs until it is
killed.
"""

import threading
import time

forks = [threading.Lock() for _ in range(5)]
seated = threading.Barrier(5)


def dine(seat: int) -> None:
    left, right = forks[seat], forks[(seat + 1) % 5]
    with left:
        seated.wait()  # every philosopher now holds a left fork
        with right:
            time.sleep(0.01)  # eat


philosophers = [
    threading.Thread(target=dine, args=(seat,), name=f"philosopher-{seat}") for seat in range(5)
]
for p in philosophers:
    p.start()
print("dinner served", flush=True)
