"""The rules test_guides.py holds the pages to, checked on small pages made here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.fenced_blocks import MalformedPage, blocks
from tests.docs.test_guides import READER_SHELL, PageSession

PAGE = """# A page

```bash
echo one
```

1. In a list:

   ```python
   print("two")
   ```

````bash
cat <<'EOF'
```
EOF
````
"""


def page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text, encoding="utf-8")
    return path


def session(tmp_path: Path) -> PageSession:
    for folder in ("work", "blocks"):
        (tmp_path / folder).mkdir(exist_ok=True)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    return PageSession(env, tmp_path / "work", tmp_path / "blocks")


def test_blocks_come_with_their_language_and_line(tmp_path: Path) -> None:
    found = blocks(page(tmp_path, PAGE))
    assert [(b.language, b.line) for b in found] == [("bash", 3), ("python", 9), ("bash", 13)]
    assert found[1].code == 'print("two")\n'  # dedented as in its list item
    assert found[2].code == "cat <<'EOF'\n```\nEOF\n"  # a shorter fence does not close


def test_an_unclosed_fence_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MalformedPage, match=r"page.md:3: a code fence that is never closed"):
        blocks(page(tmp_path, "# A page\n\n```bash\necho never closed\n"))


@pytest.mark.parametrize("fence", ["```yaml", "```", "```sh", "~~~json"])
def test_a_block_that_would_not_run_fails_naming_page_and_line(tmp_path: Path, fence: str) -> None:
    closing = fence[:3]
    [block] = blocks(page(tmp_path, f"Text\n\n{fence}\nstages: []\n{closing}\n"))
    with pytest.raises(pytest.fail.Exception, match=r"^page.md:3: a ```"):
        session(tmp_path).run(block)


def test_shell_variables_carry_to_later_blocks_but_only_exports_reach_python(
    tmp_path: Path,
) -> None:
    text = (
        "```bash\nplain=kept\nexport SHARED=env\nlist=(a b)\n```\n"
        '```bash\ntest "$plain $SHARED ${list[1]}" = "kept env b"\n```\n'
        "```python\nimport os\nassert os.environ['SHARED'] == 'env'\n"
        "assert 'plain' not in os.environ\n```\n"
    )
    runner = session(tmp_path)
    for block in blocks(page(tmp_path, text)):
        runner.run(block)


def test_a_failing_block_fails_naming_page_and_line(tmp_path: Path) -> None:
    [block] = blocks(page(tmp_path, "```bash\ntrue\nfalse | cat\n```\n"))
    with pytest.raises(pytest.fail.Exception, match=r"^page.md:1: the ```bash block exited 1"):
        session(tmp_path).run(block)  # pipefail: a failure inside a pipeline counts


def test_a_block_may_not_leave_the_working_folder(tmp_path: Path) -> None:
    [block] = blocks(page(tmp_path, "```bash\ncd /\n```\n"))
    with pytest.raises(AssertionError, match=r"page.md:1: the block ends in /"):
        session(tmp_path).run(block)


def test_the_reader_shell_is_shellcheck_clean() -> None:
    binary = shutil.which("shellcheck")
    if binary is None:
        pytest.fail("shellcheck is not installed (Debian package `shellcheck`; .ci/run has it)")
    result = subprocess.run(
        [binary, "--severity=style", str(READER_SHELL)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
