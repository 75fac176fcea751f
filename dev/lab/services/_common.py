"""Small helpers shared by the lab services: fault files, secrets, logging, argument parsing.

A fault is ON while `<lab-dir>/faults/<service>.<fault>` exists; its content is JSON options
(may be empty or `{}`). Faults are read on every request, so flipping one needs no restart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

DEFAULT_LAB_DIR = Path(__file__).resolve().parents[3] / ".lab"


def fault(lab_dir: Path | str, name: str) -> dict | None:
    """Options of fault `name` (e.g. "minibot.down") if it is ON, else None."""
    p = Path(lab_dir) / "faults" / name
    try:
        text = p.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        opts = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return opts if isinstance(opts, dict) else {}


def secrets(lab_dir: Path | str) -> dict:
    """The lab's secrets.json ({} if missing or unreadable); read fresh so rotations apply at once."""
    try:
        data = json.loads((Path(lab_dir) / "secrets.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def setup_logging(name: str) -> logging.Logger:
    logging.basicConfig(
        stream=sys.stdout,
        level=os.environ.get("LAB_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
    )
    return logging.getLogger(name)


def base_parser(description: str, default_port: int, port_env: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--host", default="127.0.0.1", help="listen address (loopback by default)")
    ap.add_argument("--port", type=int, default=int(os.environ.get(port_env, default_port)))
    ap.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("LAB_DIR", DEFAULT_LAB_DIR)))
    return ap
