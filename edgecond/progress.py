"""Progress of long work: a tqdm bar on a terminal, a plain line every `interval` s elsewhere.

A condensation under nohup, a batch scheduler or CI has no terminal; tqdm then prints
nothing (or one line per step with carriage returns), so a 30-minute run looked dead. There
the same object prints `condense: 12/20 outer iterations, loss=0.412, 06:31 elapsed, ~04:20 left`
at most every `interval` seconds, and at the end.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

INTERVAL_S = 30.0


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(self, desc: str, total: int, initial: int = 0, enabled: bool = True, unit: str = "outer iterations",
                 interval: float = INTERVAL_S, stream=None):
        self.desc, self.total, self.n, self.unit, self.interval = desc, total, initial, unit, interval
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, initial=initial, desc=desc, file=self.stream) if self.tty else None
        self.t0 = self.last = time.time()
        self.start_n, self.postfix = initial, ""

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        self.postfix = ", ".join(f"{k}={v}" for k, v in postfix.items())
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n)
        elif self.enabled and (time.time() - self.last >= self.interval or self.n >= self.total):
            self.line()

    def line(self) -> None:
        now = time.time()
        self.last = now
        done = self.n - self.start_n
        left = (now - self.t0) / done * (self.total - self.n) if done else None
        eta = f", ~{_clock(left)} left" if left is not None and self.n < self.total else ""
        post = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}{post}, {_clock(now - self.t0)} elapsed{eta}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
