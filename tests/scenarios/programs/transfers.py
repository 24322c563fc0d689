"""Bank transfers that lock both accounts: in argument order, or ordered.

Every ``Account`` makes its lock in ``__init__`` (one creation site, many
instances). ``transfer(a, b)`` locks ``a`` then ``b``; a transfer the other
way locks them in the opposite order. Run one after the other, nothing
hangs -- but two of them at the same moment can deadlock, which
``--lock-order`` reports. With ``ordered`` on the command line, each
transfer locks the account with the lower number first: no inversion.
"""

import sys
import threading


class Account:
    def __init__(self, number: int, balance: int) -> None:
        self.number = number
        self.balance = balance
        self.lock = threading.Lock()


def transfer(source: Account, target: Account, amount: int) -> None:
    with source.lock:  # noqa: SIM117 (two locks, two sites)
        with target.lock:
            source.balance -= amount
            target.balance += amount


def ordered_transfer(source: Account, target: Account, amount: int) -> None:
    first, second = sorted((source, target), key=lambda account: account.number)
    with first.lock:  # noqa: SIM117 (two locks, two sites)
        with second.lock:
            source.balance -= amount
            target.balance += amount


def main() -> int:
    move = ordered_transfer if sys.argv[1:] == ["ordered"] else transfer
    alice, bob, carol = Account(1, 100), Account(2, 100), Account(3, 100)
    payments = [(alice, bob, 10), (bob, carol, 5), (bob, alice, 20), (carol, alice, 1)]
    for source, target, amount in payments:
        worker = threading.Thread(target=move, args=(source, target, amount))
        worker.start()
        worker.join()
    print("balances:", alice.balance, bob.balance, carol.balance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
