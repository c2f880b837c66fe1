"""The web app's door under attack (issue 17, items 4-7): what each attack gets, counted
against a real web app (uvicorn, as ``edgesight webapp`` runs it) on loopback.

    race      GUESSES parallel wrong passwords for one user, limit 5: how many were
              checked (answered 401) rather than refused (429)
    lockout   5 wrong passwords from one address (127.0.0.2), then the right one from
              another (127.0.0.3): does the real user get in?
    kiosk     500 wrong kiosk keys from one address: how many were checked, how many
              WARNING lines they cost, and whether a key reached the access log
    spoof     from 127.0.0.1, EDGESIGHT_TRUSTED_PROXIES=10.0.0.0/8, X-Forwarded-For:
              10.0.0.1 and X-Forwarded-User: admin: the token request's status
    logout    a copy of the session cookie after POST /logout: the page's status

``--src DIR`` imports the web app from another source tree (e.g. ``git archive main``
unpacked), to measure it before a change:

    .venv/bin/python bench/signin_attacks.py
    .venv/bin/python bench/signin_attacks.py --src /tmp/before --out signin-attacks-before.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(("httpx", "httpcore")):  # the attacker's own log
            self.lines.append((record.levelname, record.getMessage()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT, help="source tree of the web app")
    parser.add_argument("--guesses", type=int, default=60)
    parser.add_argument("--out", default="signin-attacks.json")
    args = parser.parse_args()
    sys.path.insert(0, str(args.src))
    sys.path.insert(1, str(ROOT / "bench"))
    import httpx
    from harness import RESULTS, machine, write_result

    from edgesight.serving import ServerThread
    from webapp.app import create_app
    from webapp.settings import WebappSettings
    from webapp.users import Users

    records = Records()
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(logging.INFO)
    folder = Path(tempfile.mkdtemp(prefix="signin-attacks-"))
    users_file = folder / "users.json"
    users = Users()
    users.set_password("alice", "correct horse battery")  # the shipped scrypt cost
    users.set_password("bob", "another long password")
    kiosk_key = users.add_kiosk("lobby")
    users.save(users_file)

    def settings(**changes: Any) -> Any:
        return WebappSettings(
            node_urls=("ws://127.0.0.1:9999/ws",),
            token_key_path=folder / "key.pem",
            users_file=users_file,
            **changes,
        )

    def client(base: str, address: str = "127.0.0.1") -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=base, transport=transport, timeout=120)

    result: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine()}
    with ServerThread(create_app(settings(auth_modes=("users", "kiosk-key")))) as web:
        barrier = threading.Barrier(args.guesses)

        def guess(i: int) -> int:
            with client(web.http_url, "127.0.0.9") as c:
                barrier.wait()
                return c.post("/login", data={"user": "alice", "password": f"g{i}"}).status_code

        with ThreadPoolExecutor(max_workers=args.guesses) as pool:
            statuses = list(pool.map(guess, range(args.guesses)))
        result["race"] = {
            "guesses": args.guesses,
            "checked_401": statuses.count(401),
            "refused_429": statuses.count(429),
        }

        with client(web.http_url, "127.0.0.2") as attacker:
            for i in range(5):
                attacker.post("/login", data={"user": "alice", "password": f"x{i}"})
        with client(web.http_url, "127.0.0.3") as real:
            right = {"user": "alice", "password": "correct horse battery"}
            signed = real.post("/login", data=right)
            result["lockout"] = {"real_user_status_from_another_address": signed.status_code}
        with client(web.http_url, "127.0.0.6") as real:
            real.post("/login", data={"user": "bob", "password": "another long password"})
            cookie = dict(real.cookies)
            signed_in_page = real.get("/").status_code
            real.post("/logout")
        with client(web.http_url, "127.0.0.3") as stolen:
            stolen.cookies.update(cookie)
            result["logout"] = {
                "signed_in_page_status": signed_in_page,
                "old_cookie_page_status_after_logout": stolen.get("/").status_code,
            }

        before = len(records.lines)
        with client(web.http_url, "127.0.0.4") as flood:
            kiosk = [flood.get(f"/kiosk?key=wrong{i}").status_code for i in range(500)]
        warnings = [m for level, m in records.lines[before:] if level == "WARNING"]
        with client(web.http_url, "127.0.0.5") as kiosk_client:
            kiosk_client.get(f"/kiosk?key={kiosk_key}")
        logged = "\n".join(m for _, m in records.lines)
        result["kiosk"] = {
            "wrong_keys": 500,
            "checked_401": kiosk.count(401),
            "refused_429": kiosk.count(429),
            "warning_lines": len(warnings),
            "key_in_log": kiosk_key in logged,
        }

    proxied = settings(auth_modes=("proxy-header",), trusted_proxies=("10.0.0.0/8",))
    with ServerThread(create_app(proxied)) as web, client(web.http_url) as spoofer:
        spoof = spoofer.post(
            "/api/token", headers={"X-Forwarded-For": "10.0.0.1", "X-Forwarded-User": "admin"}
        )
        result["spoof"] = {"status": spoof.status_code}

    write_result(RESULTS / args.out, result)
    for name in ("race", "lockout", "logout", "kiosk", "spoof"):
        sys.stdout.write(f"{name}: {result[name]}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
