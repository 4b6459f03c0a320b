"""Never finishes: only the wall-clock limit from the deadline stops it."""

import time

while True:
    time.sleep(0.05)
