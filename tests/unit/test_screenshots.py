"""The README's node screenshots (docs/screenshots, made by the browser tests) are not
older than the web extensions that draw them, judged by git commit times: a checkout
resets file times, commits keep theirs."""

import os
import subprocess

import pytest

from comfyui_fewstep.tools import screenshots
from comfyui_fewstep.tools.comfy_runtime import REPO_ROOT


def test_committed_screenshots_are_not_older_than_the_extensions_they_show():
    try:
        problems = screenshots.stale()
    except screenshots.CannotJudge as why:
        if os.environ.get("CI"):  # CI runs from a full clone: there the check must run
            pytest.fail(f"CI cannot judge the screenshots: {why}")
        pytest.skip(f"cannot judge whether docs/screenshots are stale: {why}")
    assert problems == [], "\n".join(problems)


def test_every_screenshot_exists_and_the_readme_shows_it():
    readme = (REPO_ROOT / "README.md").read_text()
    for name, source in screenshots.SHOWS.items():
        assert (screenshots.SCREENSHOT_DIR / name).is_file(), f"{name} missing: run `{screenshots.REFRESH_COMMAND}`"
        assert (REPO_ROOT / source).is_file(), source
        assert f"]({screenshots.SCREENSHOT_SUBDIR}/{name})" in readme, f"the README does not show {name}"


def commit(repo, path, text, when):
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    env = {**os.environ, "GIT_AUTHOR_DATE": f"{when} +0000", "GIT_COMMITTER_DATE": f"{when} +0000",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(repo), "add", path], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", path], check=True, env=env)


def test_a_screenshot_older_than_its_extension_is_named_with_the_command_to_refresh_it(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shows = {"a.png": "web/js/a.js", "b.png": "web/js/b.js", "c.png": "web/js/c.js"}
    commit(tmp_path, "web/js/a.js", "1", 1_700_000_000)
    commit(tmp_path, "docs/screenshots/a.png", "png", 1_700_000_100)  # made after its extension: fine
    commit(tmp_path, "docs/screenshots/b.png", "png", 1_700_000_200)
    commit(tmp_path, "web/js/b.js", "2", 1_700_000_300)  # extension changed after its screenshot
    commit(tmp_path, "web/js/c.js", "3", 1_700_000_400)  # c.png never committed
    problems = screenshots.stale(tmp_path, shows)
    assert len(problems) == 2
    assert problems[0].startswith("docs/screenshots/b.png (committed 2023-11-14 22:16:40 UTC) is older than "
                                  "web/js/b.js (committed 2023-11-14 22:18:20 UTC)")
    assert problems[1].startswith("docs/screenshots/c.png is not committed")
    assert all("`make screenshots`" in p for p in problems)


def test_without_git_history_the_check_says_why_it_cannot_judge(tmp_path):
    with pytest.raises(screenshots.CannotJudge, match="not a git checkout"):
        screenshots.stale(tmp_path, {"a.png": "web/js/a.js"})
