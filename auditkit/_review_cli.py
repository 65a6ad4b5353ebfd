"""The review commands of ``auditkit``: ``users``, ``trail`` and ``export``.

::

    auditkit users add NAME --role reviewer [--role chair] [--full-name TEXT] [--email E]
    auditkit users disable NAME | reset NAME | list | keygen NAME --out chair.pem
    auditkit trail verify [--no-files]         recompute the hash chain; exit 1 if broken
    auditkit trail show                        the events, oldest first
    auditkit export AUDIT_DIR --release --out DIR [--k 10]
    auditkit export AUDIT_DIR --in-house --out DIR

Passwords are never taken from the command line: ``--password-env VAR`` names an
environment variable, otherwise they are asked for (twice) on the terminal, or read as
one line from standard input. The commands act as ``system:<login name>`` in the trail
(whoever can run them on the server can reach the database anyway), or as ``--as NAME``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from .exceptions import ConfigError

__all__ = ["add_review_commands"]


def _store(args: argparse.Namespace) -> Any:
    from .store import ReviewStore

    return ReviewStore(args.db or None)


def _actor(args: argparse.Namespace) -> str:
    if getattr(args, "as_user", None):
        return str(args.as_user)
    try:
        return f"system:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in a container
        return "system:unknown"


def _password(args: argparse.Namespace, required: bool = True) -> str | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise ConfigError(f"--password-env names {args.password_env}, which is not set.")
        return value
    if not required:
        return None
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise ConfigError("the two passwords differ; nothing was changed.")
        return first
    return sys.stdin.readline().rstrip("\n")


def _cmd_users(args: argparse.Namespace) -> int:
    store = _store(args)
    actor = _actor(args)
    if args.users_command == "add":
        sso_only = args.sso_only
        password = None if sso_only else _password(args)
        user = store.add_user(args.name, full_name=args.full_name or args.name,
                              roles=args.role, password=password, email=args.email,
                              actor=actor)
        print(f"added {user.name} ({', '.join(user.roles)})"
              + (" - signs in through single sign-on only" if sso_only else ""))
    elif args.users_command == "disable":
        store.disable_user(args.name, actor=actor)
        print(f"disabled {args.name}; their reviews are kept")
    elif args.users_command == "enable":
        store.enable_user(args.name, actor=actor)
        print(f"enabled {args.name}")
    elif args.users_command == "reset":
        store.reset_password(args.name, _password(args) or "", actor=actor)
        print(f"new password set for {args.name}")
    elif args.users_command == "keygen":
        from .store import generate_key_pair

        private, public = generate_key_pair()
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private)
        store.set_public_key(args.name, public, actor=actor)
        print(f"wrote {args.name}'s private signing key to {args.out} (keep it with them, "
              "mode 0600); the public key is on their account")
    else:  # list
        for u in store.users():
            state = "active" if u.active else "disabled"
            how = "password" if u.has_password else "single sign-on"
            key = ", signing key" if u.public_key else ""
            print(f"{u.name:16} {','.join(u.roles):32} {state:9} {how}{key}  {u.email or ''}")
    store.close()
    return 0


def _cmd_trail(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        if args.trail_command == "show":
            for e in store.events():
                print(f"#{e['seq']:<5} {e['at'][:19]} {e['actor']:16} {e['kind']:20} "
                      f"{e['hash']}")
            return 0
        report = store.verify_trail(check_files=not args.no_files)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"ok": report.ok, "n_events": report.n_events, "head": report.head,
                          "problems": [p.__dict__ for p in report.problems]}, indent=2))
    elif report.ok:
        print(f"trail intact: {report.n_events} events, head {report.head}")
    else:
        first = report.first
        assert first is not None  # noqa: S101 - ok is False
        where = f"#{first.seq}" if first.seq is not None else "(a row without an event)"
        print(f"TRAIL BROKEN: {len(report.problems)} problem(s); first broken event: {where}")
        for problem in report.problems:
            print(f"  {problem}")
    if args.head and args.head not in report.heads.values():
        print(f"the chain head {args.head} printed earlier is not in this trail: the trail "
              "was rewritten or truncated since")
        return 1
    return 0 if report.ok else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_audit

    audience = "in-house" if args.in_house else "release"
    manifest = export_audit(args.audit_dir, args.out, audience=audience, k=args.k)
    for name, meta in manifest["files"].items():
        print(f"wrote {os.path.join(args.out, name)} (audience: {meta['audience']})")
    for name, why in manifest["withheld"].items():
        print(f"withheld {name}: {why}")
    print(f"wrote {os.path.join(args.out, 'MANIFEST.json')}")
    return 0


def add_review_commands(sub: Any) -> None:
    """Add ``users``, ``trail`` and ``export`` to the ``auditkit`` sub-parsers."""
    db_help = "database URL (default $AUDITKIT_DB_URL or audits/auditkit-review.db)"

    p = sub.add_parser("users", help="manage the review accounts (administrator)")
    users = p.add_subparsers(dest="users_command", required=True)
    for name, text in [("add", "add an account"), ("disable", "disable an account"),
                       ("enable", "enable a disabled account"),
                       ("reset", "set a new password"),
                       ("keygen", "make a chair's Ed25519 signing key pair"),
                       ("list", "list the accounts")]:
        q = users.add_parser(name, help=text)
        if name != "list":
            q.add_argument("name", help="account name")
        q.add_argument("--db", help=db_help)
        q.add_argument("--as", dest="as_user", help="act as this administrator account")
        if name == "add":
            q.add_argument("--role", action="append", required=True,
                           choices=["engineer", "reviewer", "chair", "administrator"],
                           help="role (repeatable)")
            q.add_argument("--full-name", help="name printed in the signature block")
            q.add_argument("--email", help="e-mail (how single sign-on finds the account)")
            q.add_argument("--sso-only", action="store_true",
                           help="no local password: signs in through single sign-on")
        if name in ("add", "reset"):
            q.add_argument("--password-env", metavar="VAR",
                           help="read the password from this environment variable")
        if name == "keygen":
            q.add_argument("--out", required=True, help="file for the private key (new)")
        q.set_defaults(func=_cmd_users)

    p = sub.add_parser("trail", help="verify or show the review trail")
    trail = p.add_subparsers(dest="trail_command", required=True)
    q = trail.add_parser("verify", help="recompute the hash chain and re-hash evidence files")
    q.add_argument("--no-files", action="store_true", help="do not re-hash evidence files")
    q.add_argument("--head", help="a chain head printed earlier (e.g. in a decision record)")
    q.add_argument("--json", action="store_true")
    q.add_argument("--db", help=db_help)
    q.set_defaults(func=_cmd_trail)
    q = trail.add_parser("show", help="list the events")
    q.add_argument("--db", help=db_help)
    q.set_defaults(func=_cmd_trail)

    p = sub.add_parser("export", help="write an audit bundle for an audience")
    p.add_argument("audit_dir", help="audit folder (holding audit.json)")
    p.add_argument("--out", required=True, help="new or empty folder")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--release", action="store_true",
                     help="for outside the institution: small-cell rule applied")
    who.add_argument("--in-house", action="store_true",
                     help="for inside: every group with its exact n")
    p.add_argument("--k", type=int, help="small-cell threshold (default: the audit's own)")
    p.set_defaults(func=_cmd_export)
