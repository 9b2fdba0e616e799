"""moto's server, with DynamoDB writes made atomic as they are in DynamoDB.

Real DynamoDB evaluates a write's condition and applies the write as one step, so among
concurrent conditional puts on one key exactly one succeeds. moto's threaded server checks the
condition and then writes, so under load two racing claims can both win — a test of the dedupe
lease then fails (or passes) by luck. Serialising moto's DynamoDB writes restores the guarantee
the code relies on; everything else is moto as published.

Usage: python scripts/moto_server.py -H 127.0.0.1 -p PORT   (the same flags as moto_server)
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_WRITES = threading.RLock()


def _atomic(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _WRITES:
            return method(*args, **kwargs)

    return wrapper


for _name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
    setattr(DynamoDBBackend, _name, _atomic(getattr(DynamoDBBackend, _name)))

if __name__ == "__main__":
    sys.exit(main())
