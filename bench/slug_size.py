"""What a Heroku slug of this app holds: the files .slugignore leaves, and the
packages requirements.txt installs into a fresh virtual environment (as the
Python buildpack does, pip and setuptools included), each in bytes and
together compressed (tar czf). The buildpack's Python runtime comes on top.

    python bench/slug_size.py   # writes bench/results/slug_size.json
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from common import ROOT, machine, write_json

from tests.launcher import slug_files

HEROKU_SLUG_LIMIT_MB = 500


def tree_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def main() -> None:
    files = slug_files()
    app_bytes = sum((ROOT / name).stat().st_size for name in files)
    with tempfile.TemporaryDirectory() as scratch:
        venv = Path(scratch) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "-r", ROOT / "requirements.txt"],
                       check=True)
        site_packages = next(venv.glob("lib/python*/site-packages"))
        packages_bytes = tree_bytes(site_packages)
        archive = Path(scratch) / "slug.tgz"
        with tarfile.open(archive, "w:gz") as slug:
            for name in files:
                slug.add(ROOT / name, arcname=f"app/{name}")
            slug.add(site_packages, arcname="site-packages")
        compressed_bytes = archive.stat().st_size
    result = {**machine(), "files": len(files), "app_files_bytes": app_bytes, "packages_bytes": packages_bytes,
              "compressed_bytes": compressed_bytes, "heroku_limit_mb": HEROKU_SLUG_LIMIT_MB}
    print(f"{len(files)} app files: {app_bytes / 1e6:.0f} MB; requirements.txt installed: "
          f"{packages_bytes / 1e6:.0f} MB; both compressed: {compressed_bytes / 1e6:.0f} MB "
          f"(Heroku's limit: {HEROKU_SLUG_LIMIT_MB} MB compressed, the Python runtime included)")
    print(f"wrote {write_json('slug_size.json', result)}")


if __name__ == "__main__":
    main()
