"""README.md's Python blocks, run as written (so that they cannot drift from the package)."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_every_python_block_of_the_readme_runs():
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert blocks, "README.md has no ```python block"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
