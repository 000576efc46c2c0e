"""CI helper: wait for PostgreSQL, and create or drop a scratch database."""

import sys
import time

import psycopg


def wait(admin_url: str, seconds: float) -> bool:
    deadline = time.time() + seconds
    while True:
        try:
            psycopg.connect(admin_url, connect_timeout=3).close()
            return True
        except psycopg.OperationalError:
            if time.time() > deadline:
                return False
            time.sleep(1)


def main() -> int:
    action, admin_url = sys.argv[1], sys.argv[2]
    if action == "wait":
        return 0 if wait(admin_url, float(sys.argv[3])) else 1
    name = sys.argv[3]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if action == "create":
            conn.execute(f'CREATE DATABASE "{name}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
