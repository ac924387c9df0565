"""The web page of ``phototag serve`` in a real headless Chromium (Selenium), against a real server on a loopback
port, on a library scanned for real: photos of two people (scikit-image's astronaut, matplotlib's Grace Hopper,
three of each), a cat and coffee, with the builtin offline classifier, embedder, dlib face detector, people,
XMP and JSON sidecar writers; exiftool reads back what the pages changed.

One library, one server and one browser per module. The browser tests skip (with the reason) when Chromium or
chromedriver is missing (``apt-get install chromium chromium-driver``); the plain-HTTP tests (CSRF, login,
ids instead of paths) and the thumbnail cache tests run everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from phototag.cli import CliState, cli
from phototag.config import Config, load_config
from phototag.daemon.queue import WorkQueue
from phototag.exiftool import Exiftool, as_list
from phototag.manager import get_plugin_manager
from phototag.samples import _matplotlib_sample, _skimage_dir
from phototag.serve.testing import Served, serving

pytest.importorskip("dlib")
pytest.importorskip("jinja2")

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
PLUGINS = "classify,embed,faces,people,xmp,sidecar,search"
KEY = "web-test-key-0123456789"


# -- the library ------------------------------------------------------------------------------------------------


@dataclass
class Site:
    library: Path
    config: Config
    config_file: Path
    state_db: Path
    served: Served
    pm: Any
    phototag: Callable[..., Any]

    @property
    def url(self) -> str:
        return self.served.url

    def hash_of(self, name: str) -> str:
        with sqlite3.connect(self.state_db) as db:
            row = db.execute(
                "SELECT content_hash FROM files WHERE path = ?", (str(self.library / name),)
            ).fetchone()
        assert row is not None, name
        return str(row[0])

    def cluster_of(self, prefix: str) -> int:
        """The person id whose faces are all in photos named ``prefix*``."""
        with sqlite3.connect(self.state_db) as db:
            rows = db.execute(
                "SELECT f.person, fl.path FROM faces f JOIN files fl ON fl.content_hash = f.content_hash"
            ).fetchall()
        people: dict[int, set[str]] = {}
        for person, path in rows:
            people.setdefault(int(person), set()).add(Path(path).name)
        [found] = [p for p, names in people.items() if all(n.startswith(prefix) for n in names)]
        return found


def _write_library(folder: Path) -> None:
    sources = {
        "astronaut": _skimage_dir() / "astronaut.png",
        "hopper": _matplotlib_sample("grace_hopper.jpg"),
    }
    for who, path in sources.items():
        with Image.open(path) as im:
            image = im.convert("RGB")
        image.save(folder / f"{who}.jpg", quality=90)
        ImageOps.mirror(image).save(folder / f"{who}_mirror.jpg", quality=90)
        image.resize((image.width * 6 // 10, image.height * 6 // 10)).save(
            folder / f"{who}_small.jpg", quality=90
        )
    for name, target in (("chelsea.png", "cat.jpg"), ("coffee.png", "coffee.jpg")):
        with Image.open(_skimage_dir() / name) as im:
            im.convert("RGB").save(folder / target, quality=90)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("web")
    library = root / "photos"
    library.mkdir()
    _write_library(library)
    state_db = root / "state" / "state.db"
    config_file = root / "config.yaml"
    config_file.write_text(
        f"state_db: {state_db}\nplugins:\n  detect:\n    enabled: false\n  places:\n    enabled: false\n"
    )
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": PLUGINS})
    pm.hook.register_commands(cli=cli)

    def phototag(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["-c", str(config_file), *args], obj=CliState(None, (), pm, []))
        assert result.exit_code == 0, (args, result.output[-3000:], result.exception)
        return result

    phototag("scan", str(library))
    config = load_config(config_file, environ={})
    with serving(config, pm=pm) as served:
        served.app.state.pm = pm
        yield Site(library, config, config_file, state_db, served, pm, phototag)


@pytest.fixture(scope="module")
def exiftool() -> Iterator[Exiftool]:
    path = shutil.which("exiftool")
    if path is None:
        pytest.fail("exiftool is not installed: apt-get install libimage-exiftool-perl")
    with Exiftool(path) as et:
        yield et


def xmp(et: Exiftool, photo: Path) -> dict[str, Any]:
    side = photo.with_name(photo.name + ".xmp")
    return et.read_tags(
        side, "XMP-dc:Subject", "XMP-iptcExt:PersonInImage", "XMP-lr:HierarchicalSubject", "XMP-phototag:all"
    )


# -- the browser ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(
            f"no Chromium at {CHROMIUM} or chromedriver at {CHROMEDRIVER}: apt-get install chromium chromium-driver"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Callable[[Any], Any], timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _flash(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(_wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".flash")).text)


def _images_loaded(driver: Any, selector: str, allow_none: bool = False) -> list[int]:
    """naturalWidth of every image matching ``selector`` once all finished loading (0: broken); waits for at
    least one unless ``allow_none``."""
    script = (
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(i => i.complete ? i.naturalWidth : -1)"
    )

    def loaded(d: Any) -> tuple[int, ...] | None:
        widths = d.execute_script(script, selector)
        return (0, *widths) if -1 not in widths and (widths or allow_none) else None

    return list(_wait(driver, loaded)[1:])  # the leading 0 keeps an empty answer truthy for the wait


def test_name_a_cluster_and_the_photos_xmp_carries_the_name(
    site: Site, browser: Any, exiftool: Exiftool
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    hopper = site.cluster_of("hopper")
    browser.get(f"{site.url}/ui/people")
    assert browser.title.startswith("People")
    faces = _images_loaded(browser, f"#cluster-{hopper} img")
    assert len(faces) == 3 and all(w == 128 for w in faces), faces  # real face crops, decoded by the browser
    for photo in site.library.glob("hopper*.jpg"):
        assert as_list(xmp(exiftool, photo).get("XMP-iptcExt:PersonInImage")) == []
    field = browser.find_element(By.ID, f"name-{hopper}")
    field.send_keys("Grace Hopper", Keys.ENTER)  # keyboard only: type, Enter
    assert "metadata written again for 3 photo(s)" in _flash(browser)
    for photo in sorted(site.library.glob("*.jpg")):
        meta = xmp(exiftool, photo)
        named = photo.name.startswith("hopper")
        assert as_list(meta.get("XMP-iptcExt:PersonInImage")) == (["Grace Hopper"] if named else []), (
            photo.name
        )
        assert ("People|Grace Hopper" in as_list(meta.get("XMP-lr:HierarchicalSubject"))) is named
    # the named person is listed, and their page shows their photos
    browser.find_element(By.LINK_TEXT, "Grace Hopper").click()
    _wait(browser, lambda d: d.title.startswith("Grace Hopper"))
    assert len(_images_loaded(browser, "ul.grid img")) == 3


def test_search_by_keyword_shows_thumbnails_and_the_photo_page(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{site.url}/ui/search")
    box = browser.find_element(By.ID, "q")
    box.send_keys("cat", Keys.ENTER)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results img"))
    widths = _images_loaded(browser, "#results img")
    assert widths and all(0 < w <= 256 for w in widths), widths
    alts = [i.get_attribute("alt") for i in browser.find_elements(By.CSS_SELECTOR, "#results img")]
    assert alts[0] == "cat.jpg", alts
    browser.find_element(By.CSS_SELECTOR, "#results a").click()
    _wait(browser, lambda d: d.title.startswith("cat.jpg"))
    keywords = [k.text for k in browser.find_elements(By.CSS_SELECTOR, "ul.keywords li span")]
    assert "Cat" in keywords, keywords
    assert _images_loaded(browser, ".photo img")[0] > 256  # the large thumbnail
    browser.find_element(By.LINK_TEXT, "Similar to this").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results img"))
    first = browser.find_element(By.CSS_SELECTOR, "#results img").get_attribute("alt")
    assert first == "cat.jpg"  # a photo is most similar to itself
    # thumbnails are cached beside the state DB, never next to the photos
    cached = list((site.state_db.parent / "thumbnails").glob("*.jpg"))
    assert any(p.name.startswith(site.hash_of("cat.jpg")) for p in cached)
    strays = [
        p.name for p in site.library.iterdir() if not p.name.endswith((".jpg", ".xmp", ".phototag.json"))
    ]
    assert strays == []


def test_reject_a_keyword_and_it_stays_gone_after_a_rescan(
    site: Site, browser: Any, exiftool: Exiftool
) -> None:
    from selenium.webdriver.common.by import By

    coffee = site.library / "coffee.jpg"
    before = xmp(exiftool, coffee)
    assert "Espresso" in as_list(before.get("XMP-dc:Subject"))
    browser.get(f"{site.url}/ui/review")
    row = browser.find_element(
        By.XPATH, "//ul[@class='review']/li[.//p[@class='name' and text()='coffee.jpg']]"
    )
    row.find_element(By.CSS_SELECTOR, "button[aria-label='Reject Espresso for coffee.jpg']").click()
    assert "rejected 'Espresso' on 1 photo(s); metadata written again for 1 photo(s)" in _flash(browser)
    after = xmp(exiftool, coffee)
    assert "Espresso" not in as_list(after.get("XMP-dc:Subject"))
    assert "Coffee" in as_list(after.get("XMP-dc:Subject"))
    # a full re-run (every model again, every photo written) does not add it back
    site.phototag("scan", "--force", str(site.library))
    assert "Espresso" not in as_list(xmp(exiftool, coffee).get("XMP-dc:Subject"))
    # accept: the keyword becomes the user's, so untag keeps it (and removes phototag's others)
    browser.get(f"{site.url}/ui/review")
    row = browser.find_element(
        By.XPATH, "//ul[@class='review']/li[.//p[@class='name' and text()='coffee.jpg']]"
    )
    row.find_element(By.CSS_SELECTOR, "button[aria-label='Accept Coffee for coffee.jpg']").click()
    assert "accepted 'Coffee'" in _flash(browser)
    accepted = xmp(exiftool, coffee)
    assert "Coffee" in as_list(accepted.get("XMP-dc:Subject"))
    assert "Coffee" not in as_list(accepted.get("XMP-phototag:AddedSubject"))
    site.phototag("untag", str(coffee))
    side = coffee.with_name(coffee.name + ".xmp")
    subject = (
        as_list(exiftool.read_tags(side, "XMP-dc:Subject").get("XMP-dc:Subject")) if side.exists() else []
    )
    assert subject == ["Coffee"], subject
    site.phototag("scan", str(site.library))  # put phototag's keywords back for the other tests


def test_status_shows_a_failure_and_retry_queues_it(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    broken = site.library / "broken.jpg"
    broken.write_bytes((site.library / "cat.jpg").read_bytes()[:2000])  # a truncated copy
    with WorkQueue(site.state_db) as queue:  # what the daemon records for a photo that cannot be read
        queue.enqueue([broken])
        queue.fail(broken, f"{broken}: truncated or corrupt image data: re-copy or re-export it", 2000, 0)
    try:
        browser.get(f"{site.url}/ui/status")
        assert browser.find_element(By.ID, "queue-failed").text == "1"
        table = browser.find_element(By.CSS_SELECTOR, "table.failures").text
        assert "broken.jpg" in table and "truncated or corrupt" in table
        models = browser.find_element(By.XPATH, "//h2[text()='Models']/following-sibling::table").text
        assert "efficientnet-lite0" in models and "classify" in models
        browser.find_element(By.CSS_SELECTOR, f"button[aria-label='Retry {broken}']").click()
        assert "queued 1 failed photo(s) again" in _flash(browser)
        assert browser.find_element(By.ID, "queue-failed").text == "0"
        assert browser.find_element(By.ID, "queue-waiting").text == "1"
        with WorkQueue(site.state_db) as queue:
            assert queue.failures() == [] and str(broken) in queue.waiting()
    finally:
        broken.unlink()
        with WorkQueue(site.state_db) as queue:
            queue.remove([broken])


def test_screenshots_of_every_page(site: Site, browser: Any) -> None:
    """Screenshots for the README (docs/images/web-*.png), when WEB_SCREENSHOTS names the folder."""
    folder = os.environ.get("WEB_SCREENSHOTS")
    if not folder:
        pytest.skip("set WEB_SCREENSHOTS=docs/images to write the README's screenshots")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    pages = {"people": "/ui/people", "search": "/ui/search?q=a&mode=keyword", "review": "/ui/review",
             "status": "/ui/status", "photo": f"/ui/photo/{site.hash_of('cat.jpg')}"}  # fmt: skip
    broken = site.library / "IMG_0042.jpg"
    with WorkQueue(site.state_db) as queue:  # a failure to show, as the daemon records one
        queue.enqueue([broken])
        queue.fail(broken, f"{broken}: truncated or corrupt image data: re-copy or re-export it", 2000, 0)
    try:
        for name, path in pages.items():
            browser.get(site.url + path)
            _images_loaded(browser, "main img", allow_none=True)
            browser.save_screenshot(str(out / f"web-{name}.png"))
    finally:
        with WorkQueue(site.state_db) as queue:
            queue.remove([broken])
            queue.retry_failed([broken])
            queue.remove([broken])
    browser.set_window_size(390, 844)  # a phone
    browser.get(site.url + "/ui/people")
    _images_loaded(browser, "main img")
    browser.save_screenshot(str(out / "web-people-phone.png"))
    browser.set_window_size(1200, 900)


# -- plain HTTP: CSRF, login, ids instead of paths --------------------------------------------------------------


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html[:500]
    return found.group(1)


def test_a_form_without_the_csrf_token_or_from_another_site_changes_nothing(site: Site) -> None:
    astronaut = site.cluster_of("astronaut")
    with httpx.Client(base_url=site.url) as client:
        token = _csrf(client.get("/ui/people").text)
        refused = [
            client.post(f"/ui/people/{astronaut}/name", data={"name": "Mallory"}),
            client.post(f"/ui/people/{astronaut}/name", data={"name": "Mallory", "csrf": "0" * 64}),
            client.post(
                f"/ui/people/{astronaut}/name",
                data={"name": "Mallory", "csrf": token},
                headers={"Origin": "https://evil.example"},
            ),
            client.post("/ui/status/retry", data={}),
            client.post("/ui/review", data={"verdict": "reject", "keyword": "Cat"}),
        ]
    assert [r.status_code for r in refused] == [403] * 5
    assert "security token" in refused[0].text
    with sqlite3.connect(site.state_db) as db:
        assert db.execute("SELECT name FROM people WHERE id = ?", (astronaut,)).fetchone()[0] != "Mallory"
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'keyword_review'").fetchone():
            assert db.execute("SELECT COUNT(*) FROM keyword_review WHERE keyword = 'Cat'").fetchone()[0] == 0


def test_photos_are_addressed_by_id_never_by_path(site: Site) -> None:
    with httpx.Client(base_url=site.url) as client:
        attempts = [
            "/ui/thumb/../../../../etc/passwd",
            "/ui/thumb/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "/ui/thumb/..%2F..%2Fstate%2Fstate.db",
            f"/ui/thumb/{site.library / 'cat.jpg'}",
            "/ui/thumb/" + "0" * 32,  # a well-formed id that is not on record
            f"/ui/thumb/{site.hash_of('cat.jpg')}?size=4096",  # not a size we make
            "/ui/photo/%2Fetc%2Fpasswd",
            "/ui/search?similar=../../etc/passwd",
            "/ui/face/-1",
            "/ui/static/../../../state/state.db",
            "/ui/static/%2e%2e/%2e%2e/keywordreview.py",
        ]
        answers = {path: client.get(path) for path in attempts}
        ok = client.get(f"/ui/thumb/{site.hash_of('cat.jpg')}")
    for path, answer in answers.items():
        assert answer.status_code == 404, (path, answer.status_code)
        assert b"root:" not in answer.content and b"SQLite format" not in answer.content, path
    assert ok.status_code == 200 and ok.content[:2] == b"\xff\xd8"


def test_with_an_api_key_the_pages_need_a_login_session(site: Site) -> None:
    with serving(site.config, pm=site.pm, key=KEY) as served, httpx.Client(base_url=served.url) as client:
        served.app.state.pm = site.pm
        first = client.get("/ui/people")
        assert first.status_code == 303 and first.headers["location"].startswith("/ui/login?next=")
        assert client.post("/ui/status/retry", data={}).status_code == 401
        login = client.get(first.headers["location"])
        assert login.status_code == 200 and 'type="password"' in login.text
        token = _csrf(login.text)
        wrong = client.post("/ui/login", data={"key": "guess", "csrf": token, "next": "/ui/people"})
        assert wrong.status_code == 401 and "phototag_session" not in wrong.headers.get("set-cookie", "")
        evil_next = client.post("/ui/login", data={"key": KEY, "csrf": token, "next": "//evil.example/x"})
        assert evil_next.status_code == 303 and evil_next.headers["location"] == "/ui/"
        cookie = evil_next.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        people = client.get("/ui/people")
        assert people.status_code == 200 and "<h1>People</h1>" in people.text
        # the cookie opens the pages only, never the API
        assert client.get("/v1/search", params={"q": "cat"}).status_code == 401
        # a script may use the key itself
        scripted = httpx.get(f"{served.url}/ui/status", headers={"Authorization": f"Bearer {KEY}"})
        assert scripted.status_code == 200
        # logging out ends the session
        token = _csrf(people.text)
        assert client.post("/ui/logout", data={"csrf": token}).status_code == 303
        assert client.get("/ui/people").status_code == 303


def test_not_this_person_merge_and_ignore_rewrite_the_photos(site: Site, exiftool: Exiftool) -> None:
    """The People actions through their forms (plain HTTP, with the page's CSRF token)."""
    astronaut = site.cluster_of("astronaut")
    photos = sorted(site.library.glob("astronaut*.jpg"))
    with httpx.Client(base_url=site.url) as client:
        token = _csrf(client.get("/ui/people").text)
        named = client.post(f"/ui/people/{astronaut}/name", data={"name": "Eileen Collins", "csrf": token})
        assert (
            named.status_code == 303
            and "written again for 3" in httpx.URL(named.headers["location"]).params["msg"]
        )
        assert all(
            as_list(xmp(exiftool, p).get("XMP-iptcExt:PersonInImage")) == ["Eileen Collins"] for p in photos
        )
        page = client.get(f"/ui/people/{astronaut}").text
        face_ids = re.findall(r'name="face" value="(\d+)"', page)
        assert len(face_ids) == 3
        split = client.post(f"/ui/people/{astronaut}/split", data={"face": face_ids[0], "csrf": token})
        assert "moved from person" in httpx.URL(split.headers["location"]).params["msg"]
        names = {p.name: as_list(xmp(exiftool, p).get("XMP-iptcExt:PersonInImage")) for p in photos}
        assert sorted(names.values()) == [[], ["Eileen Collins"], ["Eileen Collins"]], names
        with sqlite3.connect(site.state_db) as db:
            [(new,)] = db.execute("SELECT person FROM faces WHERE rowid = ?", (int(face_ids[0]),)).fetchall()
        assert new != astronaut
        merged = client.post(f"/ui/people/{astronaut}/merge", data={"others": str(new), "csrf": token})
        assert "merged" in httpx.URL(merged.headers["location"]).params["msg"]
        assert all(
            as_list(xmp(exiftool, p).get("XMP-iptcExt:PersonInImage")) == ["Eileen Collins"] for p in photos
        )
        unknown = client.post("/ui/people/999999/name", data={"name": "Nobody", "csrf": token})
        assert "no person 999999" in httpx.URL(unknown.headers["location"]).params["error"]
        forgot = client.post(f"/ui/people/{astronaut}/forget", data={"csrf": token})
        assert forgot.headers["location"].startswith("/ui/people?msg=")
        assert all(as_list(xmp(exiftool, p).get("XMP-iptcExt:PersonInImage")) == [] for p in photos)
        assert f'id="cluster-{astronaut}"' not in client.get("/ui/people").text


def test_bulk_reject_removes_a_keyword_from_every_photo_on_the_page(site: Site, exiftool: Exiftool) -> None:
    photos = [
        p
        for p in sorted(site.library.glob("*.jpg"))
        if "Military uniform" in as_list(xmp(exiftool, p).get("XMP-dc:Subject"))
    ]
    assert len(photos) >= 2, "the classifier no longer calls Grace Hopper's uniform one"
    with httpx.Client(base_url=site.url) as client:
        page = client.get("/ui/review").text
        assert 'Military uniform</span> <span class="muted">×' in page  # listed for bulk decisions
        done = client.post(
            "/ui/review",
            data={"csrf": _csrf(page), "keyword": "Military uniform", "verdict": "reject", "page": "1"},
        )
    message = httpx.URL(done.headers["location"]).params["msg"]
    assert f"rejected 'Military uniform' on {len(photos)} photo(s)" in message
    assert f"written again for {len(photos)} photo(s)" in message
    for photo in photos:
        assert "Military uniform" not in as_list(xmp(exiftool, photo).get("XMP-dc:Subject")), photo.name


# -- the thumbnail cache ----------------------------------------------------------------------------------------


def test_thumbnail_cache_applies_orientation_and_stays_under_its_cap(tmp_path: Path) -> None:
    from phototag.config import ImageSettings
    from phototag.web.thumbs import ThumbnailCache

    with Image.open(_skimage_dir() / "astronaut.png") as im:
        wide = im.convert("RGB").resize((600, 300))
    photo = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display: the thumbnail must come out portrait
    wide.save(photo, quality=90, exif=exif)
    cache = ThumbnailCache(tmp_path / "state" / "thumbnails", ImageSettings(), max_bytes=40_000)
    data = cache.thumbnail(photo, "ab" * 16, 256)
    with Image.open(__import__("io").BytesIO(data)) as thumb:
        assert thumb.size == (128, 256)
    for n in range(8):  # more thumbnails than the cap holds
        copy = tmp_path / f"copy{n}.jpg"
        wide.rotate(n * 40).save(copy, quality=95)
        cache.thumbnail(copy, f"{n:02x}" * 16, 1024)
    assert 0 < cache.size() <= 40_000
    assert sorted(p.name for p in tmp_path.glob("*")) == sorted(
        ["rotated.jpg", "state", *(f"copy{n}.jpg" for n in range(8))]
    )
