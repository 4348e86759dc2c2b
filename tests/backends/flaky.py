"""A test room that fails: it reads its hello, then exits with status 1,
at once for its first QUICK runs (counted in COUNTER_FILE), after
LIFE seconds for the later ones.

    flaky.py COUNTER_FILE QUICK LIFE
"""
import sys
import time


def main():
    counter, quick, life = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    try:
        with open(counter) as f:
            runs = int(f.read() or 0)
    except FileNotFoundError:
        runs = 0
    with open(counter, "w") as f:
        f.write(str(runs + 1))
    sys.stdin.readline()
    if runs >= quick:
        time.sleep(life)
    sys.exit(1)


if __name__ == "__main__":
    main()
