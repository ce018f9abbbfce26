"""The keys of an installation that sets none in its environment: Django's SECRET_KEY and
the Fernet key that encrypts secrets at rest, made once at random and kept in
`<data folder>/keys.json` (readable by its owner only), then reused at every start.

No key ships in the source. A process finds its keys in the environment
(DJANGO_SECRET_KEY, FIELD_ENCRYPTION_KEYS), else in that file, else refuses to start
saying how to make them: `make run` makes the file on its first start with

    python -m connectadmin.keyfile

which prints where the file is and never overwrites one. Nothing here imports Django: the
settings module reads the file before Django is set up.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

FILE_NAME = "keys.json"


class NoKeys(RuntimeError):
    """Neither the environment nor the data folder holds the keys."""


def path_in(var_dir: Path) -> Path:
    return var_dir / FILE_NAME


def ensure(var_dir: Path) -> tuple[Path, bool]:
    """The keys file of `var_dir`, made if missing (never overwritten); (path, made)."""
    path = path_in(var_dir)
    if path.exists():
        return path, False
    var_dir.mkdir(parents=True, exist_ok=True)
    keys = {
        "secret_key": secrets.token_urlsafe(50),
        "field_encryption_keys": [Fernet.generate_key().decode()],
    }
    # Created readable by the owner only, in one step: never a moment world-readable.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(keys, out, indent=2)
        out.write("\n")
    return path, True


def read(var_dir: Path) -> dict[str, object]:
    """The keys kept in `var_dir`; NoKeys, saying how to make them, when there are none."""
    path = path_in(var_dir)
    try:
        keys = json.loads(path.read_text())
    except FileNotFoundError:
        raise NoKeys(
            f"No keys: set DJANGO_SECRET_KEY and FIELD_ENCRYPTION_KEYS in the environment, "
            f"or make {path} with `python -m connectadmin.keyfile` (`make run` does it)."
        ) from None
    except (OSError, ValueError) as exc:
        raise NoKeys(f"{path} cannot be read as the keys file ({exc}).") from None
    if not isinstance(keys, dict) or not keys.get("secret_key"):
        raise NoKeys(f"{path} holds no secret_key.")
    return keys


def main() -> None:
    from connectadmin.env import env_str  # no Django either

    var_dir = Path(
        env_str("CONNECTADMIN_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var"))
    )
    path, made = ensure(var_dir)
    print(f"{'made' if made else 'kept'} the keys file {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
