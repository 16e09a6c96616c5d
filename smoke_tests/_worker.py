"""A load generator process: `python -m smoke_tests._worker FD ADDRESS PROTOCOL SSL REQUEST_TIMEOUT`.

Started by `smoke_tests.loadgen.LoadGenerator`; FD is its end of a socket pair to the coordinator.
It ends when told to, or when the coordinator's end closes.
"""

import sys
from multiprocessing.connection import Connection

from smoke_tests.loadgen import _worker_main

if __name__ == "__main__":
    fd, address, protocol, ssl, timeout = sys.argv[1:6]
    _worker_main(Connection(int(fd)), address, protocol, ssl == "1", float(timeout))
