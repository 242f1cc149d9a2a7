# SPDX-License-Identifier: MIT
"""A writer that merges into one stash through a mount until stopped, timing
each merge (open, write the patch, close): the scale and sweep benchmarks
run it while the daemon scans."""
import os
import threading
import time


class Merger:
    def __init__(self, mnt, name="merged"):
        self.path = os.path.join(mnt, name + ".json")
        self.lat = []
        self.stopped = False
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stopped:
            t0 = time.perf_counter()
            with open(self.path, "w") as f:
                f.write('{"k%d": %d}\n' % (i % 100, i))
            self.lat.append(time.perf_counter() - t0)
            i += 1

    def stop(self):
        """Sorted latencies (seconds)."""
        self.stopped = True
        self.thread.join()
        return sorted(self.lat)
