"""Makes ``docs/images/people-contact-sheet.png`` for the README: the Grace Hopper photos of
``tests/test_people.py`` (original, mirrored, cropped, rescaled, JPEG quality 25, and one more crop) scanned by
the real pipeline with dlib faces, the cluster named, then ``phototag people show``.

Run: ``.venv/bin/python docs/images/people-contact-sheet.py``
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner
from PIL import ImageOps

from phototag.cli import CliState, cli
from phototag.manager import get_plugin_manager

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import test_people as faces  # the tests' dlib face-identity plugin and photo variants


def main() -> None:
    work = Path(tempfile.mkdtemp())
    library = work / "photos"
    library.mkdir()
    source = faces._source("hopper")
    for suffix, make in faces.VARIANTS.items():
        make(source).save(library / f"hopper{suffix}.jpg", quality=92)
    ImageOps.mirror(source.crop((60, 40, 500, 560))).save(library / "hopper_again.jpg", quality=80)
    config = work / "config.yaml"
    config.write_text(f"state_db: {work / 'state.db'}\n")
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "xmp,sidecar,people"})
    pm.register(faces.FacePlugin(), name="testfaces")
    pm.hook.register_commands(cli=cli)

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["-c", str(config), *args], obj=CliState(None, (), pm, []))
        assert result.exit_code == 0, result.output
        return result.stdout

    run("scan", str(library))
    [person] = [json.loads(line) for line in run("people", "list", "--json").splitlines()]
    run("people", "name", str(person["id"]), "Grace Hopper")
    print(run("people", "list"), end="")
    print(run("people", "show", str(person["id"]), "--out", str(Path(__file__).with_suffix(".png"))), end="")


if __name__ == "__main__":
    main()
