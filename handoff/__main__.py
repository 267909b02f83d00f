"""Command line for the handoff service: manage agents, retention and exports.

    python -m handoff agents add NAME [--role agent|supervisor] [--password-env VAR]
    python -m handoff agents list
    python -m handoff agents remove NAME
    python -m handoff agents demo     # the run command's demo supervisor (password in var/secrets/)
    python -m handoff privacy purge [--days N] [--dry-run]   # N defaults to CS_RETENTION_DAYS
    python -m handoff privacy export CONVERSATION_ID [--out DIR]   # JSON + HTML with SHA-256
    python -m handoff privacy verify EXPORT.json

Without --password-env the password is asked for on the terminal; it is never
taken from the command line, where it would end up in the shell history.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from pathlib import Path

from common.settings import Settings
from handoff.auth import AgentDirectory, Role
from handoff.queue import HandoffQueue

DEMO_AGENT = "demo"


async def _directory() -> tuple[AgentDirectory, HandoffQueue]:
    settings = Settings.from_env()
    queue = HandoffQueue.create(settings.redis_url, settings.key_prefix)
    return AgentDirectory(queue.client, settings.key_prefix), queue


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m handoff")
    commands = parser.add_subparsers(dest="group", required=True)
    agents = commands.add_parser("agents").add_subparsers(dest="command", required=True)
    add = agents.add_parser("add")
    add.add_argument("name")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.AGENT.value)
    add.add_argument("--password-env", help="read the password from this environment variable")
    remove = agents.add_parser("remove")
    remove.add_argument("name")
    agents.add_parser("list")
    agents.add_parser("demo")
    privacy = commands.add_parser("privacy").add_subparsers(dest="command", required=True)
    purge = privacy.add_parser("purge", help="remove conversations idle longer than the retention period")
    purge.add_argument("--days", type=float, default=None, help="default: CS_RETENTION_DAYS (30)")
    purge.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    export = privacy.add_parser("export", help="one conversation as JSON and HTML, masked, with SHA-256")
    export.add_argument("conversation_id")
    export.add_argument("--out", type=Path, default=None, help="default: var/exports/")
    verify = privacy.add_parser("verify", help="check an export's SHA-256")
    verify.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.group == "privacy":
        return await _privacy(args)

    directory, queue = await _directory()
    try:
        if args.command == "add":
            password = os.environ.get(args.password_env, "") if args.password_env else getpass.getpass()
            await directory.add(args.name, password, Role(args.role))
            print(f"agent {args.name} ({args.role}) saved")
        elif args.command == "remove":
            print("removed" if await directory.remove(args.name) else "no such agent")
        elif args.command == "list":
            for agent in sorted(await directory.all(), key=lambda a: a.name):
                print(f"{agent.name}\t{agent.role.value}")
        elif args.command == "demo":
            print(await ensure_demo_agent(directory))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        await queue.close()
    return 0


async def _privacy(args: argparse.Namespace) -> int:
    from handoff import retention

    if args.command == "verify":
        try:
            ok = retention.verify(args.path)
        except retention.NotAnExport as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"{args.path}: {'intact' if ok else 'CHANGED - the content does not match its SHA-256'}")
        return 0 if ok else 1
    settings = Settings.from_env()
    queue = HandoffQueue.create(settings.redis_url, settings.key_prefix)
    try:
        if args.command == "purge":
            days = settings.retention_days if args.days is None else args.days
            report = await retention.purge(queue.client, settings.key_prefix, days, dry_run=args.dry_run)
            print(report.summary())
            return 0
        out = args.out or settings.var_dir / "exports"
        try:
            json_path, html_path, digest = await retention.export(
                queue.client, settings.key_prefix, args.conversation_id, out
            )
        except KeyError:
            print(f"error: no conversation {args.conversation_id!r}", file=sys.stderr)
            return 2
        print(f"{json_path}\n{html_path}\nsha256 {digest}")
        return 0
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        await queue.close()


async def ensure_demo_agent(directory: AgentDirectory) -> str:
    """DEMO ONLY: a supervisor "demo" whose password is generated once into var/secrets/demo-agent.txt."""
    path = Settings.from_env().var_dir / "secrets" / "demo-agent.txt"
    if path.is_file():
        password = path.read_text(encoding="utf-8").strip()
    else:
        password = os.environ.get("CS_DEMO_AGENT_PASSWORD") or secrets.token_urlsafe(9)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(password + "\n", encoding="utf-8")
        path.chmod(0o600)
    existing = await directory.get(DEMO_AGENT)
    if existing is None or not _same(existing.password_hash, password):
        await directory.add(DEMO_AGENT, password, Role.SUPERVISOR)
    return f"console login: {DEMO_AGENT} / {password}  (demo only; stored in {path})"


def _same(stored: str, password: str) -> bool:
    from handoff.auth import verify_password

    return verify_password(password, stored)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
