"""The Persian part of the book (book/fa, course_lib.fa): its glossary is one data file whose
terms are the ones the source documents use, its tables and figures come from the saved
results/*.json (a missing metric stops the build, a missing file gives a labelled note),
its pages are right-to-left with Latin digits, and the font ships with its licence.
Small Sphinx projects test the directives; the browser checks are in test_book_browser.py."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest

from course_lib.fa import assignments, figures, glossary, sections, spec

REPO = Path(__file__).resolve().parents[1]
FA = REPO / "book" / "fa"
SEEDS = REPO.parent / "shared" / "seeds"
CHAPTER_PAGES = ["01_baseline", "02_pruning", "03_taylor", "04_nas", "05_bnn", "06_bnn_methods"]
FA_PAGES = ["index", *CHAPTER_PAGES, "assignments", "glossary"]
ISSUE_TERMS = [
    "pruning",
    "sparsity",
    "fine-tuning",
    "structured pruning",
    "importance",
    "supernet",
    "decision variable",
    "synchronization point",
    "straight-through estimator",
    "binarization",
    "quantization error",
    "latency",
    "speed-up",
]
FUTURE_KEYS = {
    "taylor": ["params_removed_fraction", "accuracy_drop_points"],
    "bnn": [
        "binary_resnet20_test_accuracy",
        "fp_resnet20_test_accuracy",
        "kernel_speedup_256",
        "network_speedup_vs_ort_b1",
        "packed_size_ratio",
    ],
}
TERM_ROLE = re.compile(r"\{fa-term\}`([^`]+)`")


def _spelled_alike(text: str) -> str:
    """:func:`seed_text`'s substitutions, each keeping the text's length (what it deletes
    becomes a zero-width non-joiner, which seed_text then removes), so that a position in
    the result is still a position in ``text``."""
    text = text.replace("ي", "ی").replace("ى", "ی").replace("ك", "ک")
    text = text.replace("\u036c", "ی").replace("\u037a", "ک")
    text = re.sub(
        "(?<=[\u0621-\u064a])[\u0660-\u0669\u06f0-\u06f9]+(?=[ی\u0621-\u064a])",
        lambda m: "\u200c" * len(m.group(0)),
        text,
    )
    return re.sub("ه[\u200c ]ی(?=\\s)", "ه\u200c\u200c", text)


def seed_text(text: str) -> str:
    """Seed text with the differences of spelling that text extraction leaves removed:
    Arabic yeh and kaf, zero-width non-joiners, spaces, diacritics, the ezafe; seed 002's
    extraction writes yeh and kaf as U+036C and U+037A and glues its footnote numbers into
    words (انتقال٢۶ͬ: انتقالی with footnote 26)."""
    return re.sub(r"[\u200c\u200d\u0640\u0654\u064b-\u0652\s]", "", _spelled_alike(text))


def seed_forms(phrase: str) -> set[str]:
    """How a seed may write ``phrase``: as it is, its words reversed (seed 002's extraction
    reverses the word order of its lines), or in the plural (مسیر موازی: مسیرهای موازی)."""
    words = phrase.split()
    plurals = [" ".join([words[0] + ("های" if len(words) > 1 else "ها"), *words[1:]])]
    forms = set()
    for form in [phrase, *plurals]:
        forms |= {seed_text(form), seed_text(" ".join(reversed(form.split())))}
    return forms


# -- the glossary -------------------------------------------------------------------------------


def test_the_glossary_has_the_course_terms():
    terms = glossary.load_glossary(FA / "glossary.yml")
    assert len(terms) >= 40
    for english in ISSUE_TERMS:
        term = terms.term(english)
        assert term.fa and term.note, english
    assert terms.term("Synchronization  Point").fa == terms.term("synchronization point").fa


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"no source documents at {SEEDS}")
def test_glossary_terms_are_the_ones_the_source_documents_use():
    """A term, a variant or a rejected word that names seeds appears in each of them."""
    texts = {p.name[:3]: seed_text(p.read_text(encoding="utf-8")) for p in SEEDS.glob("*.txt")}
    terms = glossary.load_glossary(FA / "glossary.yml").values()
    missing = []
    for term in terms:
        words = [(term.fa, term.seeds), *[(v.fa, v.seeds) for v in term.variants]]
        words += [(r.fa, r.seeds) for r in term.rejected]
        missing += [
            f"{term.en} / {fa}: not in seed {number}"
            for fa, seeds in words
            for number in seeds
            if not any(form in texts[number] for form in seed_forms(fa))
        ]
    assert not missing, "\n".join(missing)
    assert sum(bool(t.seeds) for t in terms) >= 30, "most terms should come from the sources"


def test_the_settled_terms_and_the_seeds_variants_are_recorded():
    """Issue 26: one term per concept, the sources' usage first; the ambiguous ones settled,
    the sources' other words recorded."""
    terms = glossary.load_glossary(FA / "glossary.yml")
    settled = {
        "accuracy": "صحت",
        "full precision": "دقت کامل",
        "core": "هسته",
        "kernel": "کرنل",
        "pooling": "ادغام",
        "merge": "ترکیب",
        "epoch": "ایپاک",
        "cross-entropy": "آنتروپی متقابل",
        # settled in the second reading
        "thread": "ریسمان",
        "standard error": "خطای معیار",
        "random seed": "بذر تصادفی",
        "float twin": "همزاد",
        "shortcut": "میان‌بر",
        "threshold": "آستانه",
        "hook": "قلاب",
        "warm start": "شروع گرم",
        "teacher": "معلم",
        "student": "شاگرد",
        "noise": "نوفه",
        "deployment": "استقرار",
        "cost function": "تابع هزینه",
    }
    assert {en: terms.term(en).fa for en in settled} == settled
    rejected = {(t.key, r.fa) for t in terms.values() for r in t.rejected}
    assert {("accuracy", "دقت"), ("epoch", "دوره"), ("kernel", "هسته"), ("merge", "ادغام")} <= (
        rejected
    )
    assert {("thread", "رشته"), ("standard error", "خطای استاندارد")} <= rejected
    # seeds 000 and 001 write ریسمان for the threads that run the paths: a term of its own
    assert set(terms.term("thread").seeds) == {"000", "001"}
    assert "ریسمان" not in {v.fa for v in terms.term("parallel path").variants}
    variants = {v.fa for t in terms.values() for v in t.variants} | {t.fa for t in terms.values()}
    for word in ["پیچشی", "هرس مرحله‌به‌مرحله", "هرس وزنی", "هرس کانالی", "متغیر تصمیم‌گیری",
                 "ریسمان", "سربار", "دووجهی", "واحد گیرهٔ اصلاح‌شده", "تابع ضرر"]:  # fmt: skip
        assert any(word in v for v in variants), word
    for english in ["kurtosis", "quantile", "feature map", "backpropagation", "amplitude"]:
        assert terms.term(english).seeds, english
    for en, seeds in [("parallel path", {"000", "001"}), ("transfer learning", {"002"})]:
        assert set(terms.term(en).seeds) == seeds, en


def test_a_broken_glossary_is_refused_with_every_problem_listed(tmp_path):
    path = tmp_path / "glossary.yml"
    path.write_text(
        "- {en: pruning, fa: هرس, note: یک}\n"
        "- {en: Pruning, fa: هرس, note: دو}\n"
        "- {en: sparsity, fa: '', note: سه}\n"
        "- {en: latency, fa: تأخیر, note: '۱۰ میلی‌ثانیه', seeds: [1]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError) as error:
        glossary.load_glossary(path)
    message = str(error.value)
    assert "'pruning' is listed twice" in message
    assert "(sparsity): 'fa' is missing or empty" in message
    assert "(latency): write note with Latin digits" in message
    assert "seeds is a list of strings" in message
    with pytest.raises(KeyError, match="not in the glossary"):
        glossary.load_glossary(FA / "glossary.yml").term("no such term")


def test_every_term_a_persian_page_uses_is_in_the_glossary():
    terms = glossary.load_glossary(FA / "glossary.yml")
    used = set()
    for page in FA.glob("*.md"):
        for text in TERM_ROLE.findall(page.read_text(encoding="utf-8")):
            key = re.search(r"<([^>]+)>\s*$", text)
            used.add((key.group(1) if key else text).strip())
    for english in used:
        terms.term(english)
    assert len(used) >= 40


def test_a_latin_word_before_a_number_is_isolated_on_persian_pages_only(tmp_path):
    page = (
        "# روش ReCU\n\nبا ReCU 600 ایپاک و Restart Kernel and Run All Cells، روی CIFAR-10.\n\n"
        "کد `ReCU 1` و $x_{ReCU}$ دست نمی‌خورند.\n\n```python\nrun(ReCU, 600)\n```\n"
    )
    out = sphinx_build(
        tmp_path,
        {"book/fa/05_bnn.md": page, "notebooks/05_bnn.md": "# 5. BNN\n\nReCU 600 epochs.\n"},
        {},
    )
    html = (out / "book" / "fa" / "05_bnn.html").read_text()
    latin = '<span class="fa-ltr fa-latin">'
    words = '<span class="fa-ltr fa-latin fa-latin-words">'  # may wrap at its spaces
    assert f"با {latin}ReCU</span> 600 ایپاک" in html, "the word alone, the number after it"
    assert f"{words}Restart Kernel and Run All Cells</span>، روی {latin}CIFAR-10</span>." in html
    assert f"روش {latin}ReCU</span>" in html, "headings too"
    assert html.count(latin) + html.count(words) == 4, "not inside code or math"
    english = (out / "notebooks" / "05_bnn.html").read_text()
    assert "fa-latin" not in english


PAGE_WITH_REJECTED_WORDS = """# صفحه

صحت شبکه با دقت کامل سنجیده شد و به‌دقت گزارش شد.
دقت شبکه پس از 30 دوره بالا رفت؛ برنامهٔ دوره‌ای نرخ یادگیری ساده است.
هستهٔ کانولوشن 3x3 روی هسته‌های پردازنده اجرا می‌شود؛ لایهٔ ادغام بیشینه.
خروجی مسیرها ادغام می‌شوند. دقت‌های دو روش. واژهٔ «دقت» اینجا فقط نام برده شده است.

```python
accuracy = "دقت"  # code: not prose
```

$\\text{دقت}$ و {fa-term}`دقت <accuracy>`

```{figure} x.png
:alt: دقت در متن جایگزین
زیرنویس با دوره
```
"""


def test_a_rejected_word_in_a_page_s_prose_is_named_with_its_line_and_the_term():
    terms = glossary.load_glossary(FA / "glossary.yml")
    text = sections.prose(PAGE_WITH_REJECTED_WORDS, directive_bodies=True)
    found = glossary.rejected_uses(text, terms, "book/fa/demo.md")
    words = [re.search(r":(\d+): «([^»]+)»", f).groups() for f in found]
    assert words == [
        ("4", "دقت"),
        ("4", "دوره"),
        ("5", "هستهٔ کانولوشن"),
        ("6", "ادغام می‌شوند"),
        ("6", "دقت"),
        ("16", "دوره"),
    ], found
    assert found[0] == (
        "book/fa/demo.md:4: «دقت» is not the course's word for accuracy ("
        + terms.term("accuracy").rejected[0].reason
        + "): write «صحت»"
    )


def test_no_persian_page_uses_a_rejected_word():
    """Issue 26: one term per concept. Prose only: code, math, roles and directives'
    arguments and options are not read; the glossary's notes and the results spec's labels
    are shown to the reader, so they are read too."""
    terms = glossary.load_glossary(FA / "glossary.yml")
    found = []
    for page in sorted(FA.glob("*.md")):
        text = sections.prose(page.read_text(encoding="utf-8"), directive_bodies=True)
        found += glossary.rejected_uses(text, terms, f"book/fa/{page.name}")
    for term in terms.values():
        found += glossary.rejected_uses(term.note, terms, f"book/fa/glossary.yml ({term.en})")
    shown = (FA / "results.yml").read_text(encoding="utf-8")
    found += glossary.rejected_uses(sections.prose(shown), terms, "book/fa/results.yml")
    assert not found, "\n".join(found)


# -- nothing copied from the seeds --------------------------------------------------------------

COPIED_LETTERS = 40
"""Issue 26: no sentence of a page is copied from the seeds. A run of this many letters
(about eight words), spaces and half-spaces aside, in common with a seed is a copied
phrase, not a shared term (the longest terms of the glossary have about 25 letters)."""
LETTER = re.compile(f"[{glossary.LETTERS}]")
ALIKE = str.maketrans({"ة": "ه", "ۀ": "ه", "أ": "ا", "إ": "ا"})
"""Letters the seeds' extraction and the pages may write differently (شبکة / شبکهٔ)."""


def letters(text: str) -> tuple[str, list[int]]:
    """The letters of ``text`` after :func:`seed_text`'s normalization, nothing else (no
    space, half-space, diacritic, digit, Latin or punctuation: a copied sentence is found
    whatever the page put between its words), and where each one stands in ``text``."""
    alike = _spelled_alike(text).translate(ALIKE)
    found = list(LETTER.finditer(alike))
    return "".join(m.group(0) for m in found), [m.start() for m in found]


def seed_windows(seeds: Path = SEEDS) -> dict[str, set[str]]:
    """Every run of :data:`COPIED_LETTERS` letters of each seed, by seed number: its text
    as extracted, and with each line's words put back in reading order (seed 002's
    extraction reverses them)."""
    windows = {}
    for path in sorted(seeds.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        turned = "\n".join(" ".join(reversed(line.split())) for line in text.splitlines())
        runs = set()
        for version in (text, turned):
            run, _ = letters(version)
            runs |= {run[i : i + COPIED_LETTERS] for i in range(len(run) - COPIED_LETTERS + 1)}
        windows[path.name[:3]] = runs
    return windows


def copied_runs(text: str, windows: dict[str, set[str]], where: str) -> list[str]:
    """Each stretch of ``text`` that a seed holds :data:`COPIED_LETTERS` letters or more of,
    as ``<where>:<line>: <n> letters of seed <number>: «the page's words»``."""
    run, at = letters(text)
    found, i = [], 0
    while i <= len(run) - COPIED_LETTERS:
        seeds = [n for n, w in windows.items() if run[i : i + COPIED_LETTERS] in w]
        if not seeds:
            i += 1
            continue
        end = i + COPIED_LETTERS
        while end < len(run) and any(run[end - COPIED_LETTERS + 1 : end + 1] in windows[n]
                                     for n in seeds):  # fmt: skip
            end += 1
        line = text.count("\n", 0, at[i]) + 1
        words = " ".join(text[at[i] : at[end - 1] + 1].split())
        found.append(f"{where}:{line}: {end - i} letters of seed {'/'.join(seeds)}: «{words}»")
        i = end
    return found


def shown_text() -> dict[str, str]:
    """What the Persian part shows its reader, by where it stands: every page (all of it:
    roles and tables too), the glossary's notes and reasons, the results spec's labels."""
    shown = {f"book/fa/{page.name}": page.read_text(encoding="utf-8") for page in FA.glob("*.md")}
    for term in glossary.load_glossary(FA / "glossary.yml").values():
        reasons = [r.reason for r in term.rejected]
        shown[f"book/fa/glossary.yml ({term.en})"] = "\n".join([term.note, *reasons])
    shown["book/fa/results.yml"] = (FA / "results.yml").read_text(encoding="utf-8")
    return shown


@pytest.fixture(scope="module")
def windows() -> dict[str, set[str]]:
    if not SEEDS.is_dir():
        pytest.skip(f"no source documents at {SEEDS}")
    return seed_windows()


def test_no_persian_text_is_copied_from_the_seeds(windows):
    """Issue 26: the pages say it in the course's own words; a term of the seeds is welcome,
    a sentence of theirs is not."""
    found = [f for where, text in shown_text().items() for f in copied_runs(text, windows, where)]
    assert not found, "copied from the seeds:\n" + "\n".join(found)


def test_a_page_that_copies_a_seed_sentence_is_named_with_its_line_and_the_run(windows):
    seed = {p.name[:3]: p.read_text(encoding="utf-8").splitlines() for p in SEEDS.glob("*.txt")}
    # a whole line of seed 001, and a line of seed 002 with its words in reading order
    line_001 = next(x for x in seed["001"] if len(letters(x)[0]) > 120).strip()
    line_002 = next(x for x in seed["002"] if len(letters(x)[0]) > 80).strip()
    reading_002 = " ".join(reversed(line_002.split()))
    middle = len(line_001) // 2
    middle = line_001.index(" ", middle)
    page = (
        "# صفحه\n\nاین بند را خود درس نوشته است و از منبعی برداشته نشده است.\n\n"
        f"پیش از آن: {line_001[:middle]}\n{line_001[middle + 1 :].replace('ی', 'ي')}\n\n"
        f"و سپس {reading_002.replace(' ', chr(0x200C), 3)}.\n"
    )
    found = copied_runs(page, windows, "book/fa/demo.md")
    assert [re.match(r"book/fa/demo\.md:(\d+): \d+ letters of seed ([\d/]+)", f).groups()
            for f in found] == [("5", "001"), ("8", "002")], found  # fmt: skip
    assert f"«{line_001.split()[0]} " in found[0], "the run is quoted from the page"
    assert int(re.search(r": (\d+) letters", found[0]).group(1)) >= len(letters(line_001)[0]) - 2
    original = "# صفحه\n\nاین بند را خود درس نوشته است و از منبعی برداشته نشده است.\n"
    assert copied_runs(original, windows, "book/fa/demo.md") == []
    assert copied_runs(PAGE_WITH_REJECTED_WORDS, windows, "book/fa/demo.md") == []


# -- Latin digits, the font ---------------------------------------------------------------------


def test_the_persian_sources_write_numbers_with_latin_digits():
    for path in [*FA.glob("*.md"), *FA.glob("*.yml")]:
        found = glossary.PERSIAN_DIGITS.findall(path.read_text(encoding="utf-8"))
        assert not found, f"{path.name} uses Persian digits {found[:5]}: write 0-9"


def test_the_font_ships_with_its_licence_and_the_stylesheet_uses_it():
    static = REPO / "course_lib" / "fa" / "static"
    font = static / "fonts" / "vazirmatn-arabic-wght-normal.woff2"
    assert font.read_bytes()[:4] == b"wOF2" and font.stat().st_size < 100_000
    assert "SIL OPEN FONT LICENSE Version 1.1" in (static / "fonts" / "OFL.txt").read_text()
    css = (static / "course-fa.css").read_text()
    assert f'url("fonts/{font.name}")' in css and '"Vazirmatn Course"' in css


def test_the_persian_part_follows_the_chapters_in_the_table_of_contents():
    from course_lib import book

    files = book.toc_files()
    fa = [f for f in files if f.startswith("book/fa/")]
    assert fa == [f"book/fa/{name}" for name in FA_PAGES]
    last_chapter = max(i for i, f in enumerate(files) if f.startswith("notebooks/"))
    assert files.index(fa[0]) > last_chapter


# -- the section map: each Persian page covers its English chapter -------------------------------


def test_the_section_map_names_every_chapter_its_page_and_notebook():
    chapters = sections.load_sections(FA / "sections.yml")
    spec_chapters = spec.load_spec(FA / "results.yml").chapters
    assert list(chapters) == list(spec_chapters)
    for name, entry in chapters.items():
        assert entry.notebook == spec_chapters[name].notebook, name
        assert (REPO / entry.notebook).exists(), entry.notebook
        assert entry.page_path(REPO).exists(), entry.page
    assert [c.page for c in chapters.values()] == CHAPTER_PAGES


@pytest.mark.parametrize("chapter", list(spec.load_spec(FA / "results.yml").chapters))
def test_every_english_section_has_its_persian_counterpart(chapter):
    """Every ``##``/``###`` heading of the chapter's notebook is mapped in sections.yml, and
    every Persian heading it maps to is a heading of the page."""
    entry = sections.load_sections(FA / "sections.yml")[chapter]
    mapped = {s.en for s in entry.sections}
    english = sections.notebook_headings(REPO / entry.notebook)
    unmapped = [h for h in english if h not in mapped]
    assert not unmapped, (
        f"book/fa/sections.yml, {chapter}: these headings of {entry.notebook} are not mapped "
        "to a Persian heading:\n  " + "\n  ".join(unmapped)
    )
    stale = sorted(mapped - set(english))
    assert not stale, f"book/fa/sections.yml, {chapter}: no longer in {entry.notebook}: {stale}"
    on_page = set(sections.page_headings(entry.page_path(REPO)))
    absent = sorted({s.fa for s in entry.sections} - on_page)
    assert not absent, f"book/fa/{entry.page}.md has no heading {absent}"


@pytest.mark.parametrize("chapter", list(spec.load_spec(FA / "results.yml").chapters))
def test_each_chapter_page_carries_a_chapter_of_persian_prose(chapter):
    entry = sections.load_sections(FA / "sections.yml")[chapter]
    words = sections.prose_words(entry.page_path(REPO).read_text(encoding="utf-8"))
    low, high = sections.PROSE_WORDS
    assert low <= words <= high, f"book/fa/{entry.page}.md: {words} words of Persian prose"


def test_headings_and_prose_words_are_counted_as_the_section_map_says(tmp_path):
    path = tmp_path / "demo.ipynb"
    path.write_text(
        notebook(
            ("a", "markdown", "# Title\n\n## First  one\n\ntext\n### Sub, with #hash ##\n"),
            ("b", "markdown", "```\n## not a heading\n```\n#### too deep\n"),
            ("c", "code", "## a comment\n"),
        )
    )
    assert sections.notebook_headings(path) == ["First one", "Sub, with #hash"]
    page = (
        "---\ntitle: x\n---\n# عنوان صفحه\n\n(label)=\n## بخش اول\n\n"
        "این جمله شش واژهٔ فارسی دارد ResNet-20 و $x_{هرس}$.\n\n"
        "```{fa-code} notebooks/03_taylor.ipynb\n:cell: 1\n```\n\n"
        "```{note}\nمتن درون دستور شمرده نمی‌شود\n```\n\n"
        "| ستون | دیگر |\n|---|---|\n| یک | دو |\n\n"
        "$$\nمعادله\n$$\n\n% یادداشت\n\n{fa-term}`pruning` و {fa-value}`a:b:c` نیز.\n"
    )
    (tmp_path / "page.md").write_text(page, encoding="utf-8")
    assert sections.page_headings(tmp_path / "page.md") == ["عنوان صفحه", "بخش اول"]
    # عنوان صفحه (2), بخش اول (2), the sentence (6 + و), the last line (و، نیز.)
    assert sections.prose_words(page) == 2 + 2 + 7 + 2


def test_a_broken_section_map_is_refused(tmp_path):
    path = tmp_path / "sections.yml"
    path.write_text(
        "taylor:\n  page: 03_taylor\n  sections:\n"
        "    - {en: A, fa: الف}\n    - {en: A, fa: ب}\n    - {en: B}\n"
        "nas: [1]\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError) as error:
        sections.load_sections(path)
    message = str(error.value)
    assert "taylor: 'notebook' is missing" in message
    assert "taylor: 'A' is mapped twice" in message
    assert "taylor, section 2: needs exactly 'en' and 'fa'" in message
    assert "nas: not a mapping" in message


# -- the results spec ---------------------------------------------------------------------------


def test_the_spec_has_every_chapter_and_the_future_keys_of_chapters_3_and_5():
    chapters = spec.load_spec(FA / "results.yml").chapters
    assert list(chapters) == ["baseline", "pruning", "taylor", "nas", "bnn", "bnn_methods"]
    for name, keys in FUTURE_KEYS.items():
        assert [row.key for row in chapters[name].table] == keys
    assert chapters["bnn"].table[2].interval == "kernel_speedup_256_interval"
    assert chapters["bnn"].table[3].interval == "network_speedup_vs_ort_b1_interval"
    for chapter in chapters.values():
        assert (REPO / chapter.notebook).exists() or chapter.name in FUTURE_KEYS
        assert chapter.figure is not None, chapter.name


@pytest.mark.parametrize("chapter", ["baseline", "pruning", "nas"])
def test_each_saved_result_has_what_its_persian_page_shows(chapter):
    from course_lib.results import load_results

    entry = spec.load_spec(FA / "results.yml").chapter(chapter)
    record = load_results(chapter)
    assert record is not None, f"results/{chapter}.json is committed"
    cells = spec.table(entry, record)
    assert [c.key for c in cells] == [row.key for row in entry.table]
    first = entry.table[0]
    value = spec.lookup(record["metrics"], first.key, chapter)
    assert cells[0].value.startswith(spec.format_value(value, first.format, first.key))
    figure = figures.draw(entry.figure, record["metrics"], chapter)
    assert figure.axes and (figure.axes[0].lines or figure.axes[0].patches)


def test_values_are_formatted_with_their_units_and_intervals():
    assert spec.format_value(0.90259, "percent") == "90.3%"
    assert spec.format_value(814570, "count") == "814,570"
    assert spec.format_value(3274859, "megabytes") == "3.27 MB"
    assert spec.format_value(-1.26, "points") == "-1.3"
    assert spec.format_value(0.001, "number") == "0.001"
    assert spec.format_value("l2_group", "text") == "l2_group"
    with pytest.raises(ValueError, match="'speedup' is 'fast', not a number"):
        spec.format_value("fast", "ratio", "speedup")
    metrics = {
        "ratio": {"median": 2.1, "interval": [1.9, 2.3]},
        "latency": {"median_ms": 1.5, "low_ms": 1.4, "high_ms": 1.7},
        "plain": 2.68,
        "plain_interval": [2.5, 2.9],
        "old": 0.95,
    }
    rows = [
        spec.Row("ratio", "a", "ratio"),
        spec.Row("latency", "b", "ms"),
        spec.Row("plain", "c", "ratio", interval="plain_interval"),
        spec.Row("old", "d", "ratio"),
    ]
    cells = [spec.cell(row, metrics, "demo") for row in rows]
    assert [c.value for c in cells] == [
        "2.10x (1.90-2.30)",
        "1.5 ms (1.4-1.7 ms)",
        "2.68x (2.50-2.90)",
        "0.95x",
    ]
    assert [c.note for c in cells] == [None, None, None, spec.NO_INTERVAL]


def test_a_missing_metric_names_the_key_the_file_and_the_spec():
    entry = spec.load_spec(FA / "results.yml").chapter("taylor")
    record = {"profile": "full", "metrics": {"params_removed_fraction": 0.5}}
    with pytest.raises(spec.MissingMetric) as error:
        spec.table(entry, record)
    assert str(error.value).startswith("results/taylor.json has no metric 'accuracy_drop_points'")
    assert "book/fa/results.yml" in str(error.value)
    with pytest.raises(ValueError, match="holds a 'quick' run.*--profile full"):
        spec.table(entry, {"profile": "quick", "metrics": {}})


def test_a_dotted_key_reaches_keys_with_dots_and_list_items():
    metrics = {"sweep": {"0.5": {"acc": 0.8}, "0": {"5": 1}}, "runs": [{"a": 1}, {"a": 2}]}
    assert spec.lookup(metrics, "sweep.0.5.acc") == 0.8
    assert spec.lookup(metrics, "sweep.0.5") == {"acc": 0.8}
    assert spec.lookup(metrics, "runs.1.a") == 2
    with pytest.raises(spec.MissingMetric, match="no metric 'runs.2.a'"):
        spec.lookup(metrics, "runs.2.a")


def test_a_broken_spec_is_refused(tmp_path):
    path = tmp_path / "results.yml"
    path.write_text(
        "demo:\n  table:\n    - {key: a, label: x, format: percent}\n"
        "other:\n  notebook: notebooks/x.ipynb\n"
        "  table:\n    - {key: a, label: '۵ درصد', format: furlongs}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError) as error:
        spec.load_spec(path)
    assert "demo: needs 'notebook'" in str(error.value)
    assert "format 'furlongs' is not one of" in str(error.value)
    assert "write label with Latin digits" in str(error.value)


def test_figures_draw_lines_and_bars_from_the_metrics():
    metrics = {
        "sweep": {"0.2": {"acc": 0.9}, "0.5": {"acc": 0.8}},
        "runs": [{"beta": 1, "lat": 0.4, "acc": 0.75}, {"beta": 0.1, "lat": 0.4001, "acc": 0.75}],
        "history": [0.5, 0.6, 0.7],
        "binary": 0.8,
        "speedup": {"median": 7.5, "interval": [7.0, 8.0]},
    }
    lines = figures.draw(
        {
            "kind": "lines",
            "series": [
                {"key": "sweep", "field": "acc", "x_scale": 100, "scale": 100, "label": "a"},
                {"key": "history", "label": "b"},
                {"key": "runs", "field": "acc", "x": "lat", "point_labels": "beta"},
            ],
        },
        metrics,
        "demo",
    )
    ax = lines.axes[0]
    assert list(ax.lines[0].get_xdata()) == [20.0, 50.0]
    assert list(ax.lines[0].get_ydata()) == pytest.approx([90.0, 80.0])
    assert list(ax.lines[1].get_xdata()) == [1, 2, 3]
    assert [t.get_text() for t in ax.texts] == ["1, 0.1"], "coinciding points share a label"
    bars = figures.draw(
        {
            "kind": "bars",
            "bars": [
                {"key": "binary", "label": "binary", "scale": 100, "source": 87.4},
                {"key": "speedup", "label": "speed-up"},
            ],
        },
        metrics,
        "demo",
    )
    heights = [p.get_height() for p in bars.axes[0].patches]
    assert heights == pytest.approx([80.0, 87.4, 7.5])
    assert figures.svg_data_uri(bars) == figures.svg_data_uri(bars), "same metrics, same bytes"
    with pytest.raises(spec.MissingMetric, match="no metric 'nope'"):
        figures.draw({"kind": "bars", "bars": [{"key": "nope", "label": "x"}]}, metrics, "demo")


def test_assignment_points_come_from_the_notebooks_and_match_the_instructors_guide():
    found = {p.name: p for p in assignments.all_points()}
    guide = (REPO / "book" / "grading.md").read_text()
    for name, points in found.items():
        row = re.search(rf"^\| `{name}` \|.*\| (\d+) points \| (\d+) points \|$", guide, re.M)
        assert row, f"book/grading.md has no row for {name}"
        assert (points.auto, points.manual) == (float(row.group(1)), float(row.group(2))), name


# -- the directives, in a small Sphinx project --------------------------------------------------


def sphinx_build(
    tmp_path: Path,
    pages: dict[str, str],
    results: dict[str, object],
    files: dict[str, str] | None = None,
) -> Path:
    """Build ``pages`` (path -> MyST text) with course_lib.fa and the repository's glossary
    and spec, reading ``results`` (chapter -> record, or raw text) from a scratch folder and
    ``{fa-code}`` notebooks from ``files`` (path -> text, beside the pages, not in the
    table of contents); warnings are errors. Returns the HTML folder."""
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    src, out, saved = tmp_path / "src", tmp_path / "out", tmp_path / "results"
    (src / "book" / "fa").mkdir(parents=True)
    saved.mkdir()
    for name in ("glossary.yml", "results.yml"):
        shutil.copy(FA / name, src / "book" / "fa" / name)
    for chapter, record in results.items():
        text = record if isinstance(record, str) else json.dumps(record)
        (saved / f"{chapter}.json").write_text(text)
    pages = {"book/fa/glossary.md": "# واژه‌نامه\n\n```{fa-glossary}\n```\n", **pages}
    for path, text in pages.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(text, encoding="utf-8")
    for path, text in (files or {}).items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(text, encoding="utf-8")
    toctree = "\n".join(p.removesuffix(".md") for p in pages)
    (src / "index.md").write_text(f"# Book\n\n```{{toctree}}\n{toctree}\n```\n")
    (src / "conf.py").write_text(
        "extensions = ['myst_parser', 'course_lib.fa']\n"
        "myst_enable_extensions = ['dollarmath']\n"
        "numfig = True\n"
        f"fa_results_dir = {str(saved)!r}\n"
        f"fa_code_root = {str(src)!r}\n"
    )
    with patch_docutils(src), docutils_namespace():  # as sphinx-build: no state left over
        app = Sphinx(src, src, out, out / ".doctrees", "html", status=None,
                     warning=io.StringIO(), freshenv=True, warningiserror=True)  # fmt: skip
        app.build()
    return out


def full_record(metrics: dict) -> dict:
    return {
        "profile": "full",
        "command": "course run notebooks/03_taylor.ipynb --profile full",
        "commit": "0123456789abcdef",
        "date": "2026-01-02T03:04:05+00:00",
        "wall_time_s": 600.0,
        "machine": {"cpu": "Test CPU", "cores": 2},
        "metrics": metrics,
    }


TAYLOR_PAGE = """# فصل 3

```{chapter-links} taylor
```

{fa-term}`pruning` و باز {fa-term}`هرس‌شده <pruning>` با $E(W)$.

```{results-table} taylor
```

```{results-figure} taylor
نمودار {fa-term}`pruning`.
```
"""


def test_a_saved_result_becomes_a_table_and_a_figure_on_a_right_to_left_page(tmp_path):
    metrics = {"params_removed_fraction": 0.8123, "accuracy_drop_points": -1.25}
    out = sphinx_build(
        tmp_path,
        {"book/fa/03_taylor.md": TAYLOR_PAGE, "notebooks/03_taylor.md": "# 3. Taylor\n"},
        {"taylor": full_record(metrics)},
    )
    html = (out / "book" / "fa" / "03_taylor.html").read_text()
    assert '<div class="fa-page" dir="rtl" lang="fa">' in html
    table = html[html.index("fa-results-table") : html.index("</table>")]
    assert '<span class="fa-ltr">81.2%</span>' in table
    assert '<span class="fa-ltr">-1.2</span>' in table, "values come from the file"
    assert '<span class="fa-ltr">-4</span> (' in table, "signed numbers stay left to right"
    assert "<code" in table and "params_removed_fraction" in table
    assert "2026-01-02" in html and "0123456789ab" in html and "Test CPU, 2 cores" in html
    assert re.search(r'<img[^>]+src="data:image/svg\+xml;base64,', html)
    assert "شکل" in html and "Fig." not in html
    links = re.findall(r'<a class="[^"]*fa-term-first[^"]*" href="([^"]+)"', html)
    assert links == ["glossary.html#fa-term-pruning"], "the first use only links"
    assert html.count('<span class="fa-ltr fa-en">pruning</span>') == 1
    assert "هرس‌شده" in html
    assert 'href="../../notebooks/03_taylor.html"' in html, "the English chapter is linked"
    glossary_html = (out / "book" / "fa" / "glossary.html").read_text()
    assert 'id="fa-term-pruning"' in glossary_html and "straight-through estimator" in glossary_html
    assert (out / "_static" / "fonts" / "vazirmatn-arabic-wght-normal.woff2").exists()
    assert 'href="../../_static/course-fa.css' in html


def test_a_chapter_without_a_saved_result_gets_a_labelled_note(tmp_path):
    out = sphinx_build(tmp_path, {"book/fa/03_taylor.md": TAYLOR_PAGE}, {})
    html = (out / "book" / "fa" / "03_taylor.html").read_text()
    text = re.sub(r"<[^>]+>", "", html)
    assert "هنوز نتیجهٔ اجرای کامل ذخیره نشده است" in text
    assert "course run notebooks/03_taylor.ipynb --profile full" in text
    assert "<table" not in html and "<img" not in html
    assert "notebooks/03_taylor.ipynb" in text and "هنوز به کتاب اضافه نشده" in text, (
        "an English chapter not in the book yet is named, not linked"
    )


@pytest.mark.parametrize(
    ("saved", "page", "message"),
    [
        (
            {"taylor": full_record({"params_removed_fraction": 0.8})},
            TAYLOR_PAGE,
            "results/taylor.json has no metric 'accuracy_drop_points'",
        ),
        ({"taylor": "{not json"}, TAYLOR_PAGE, "taylor.json is not valid JSON"),
        ({}, "# x\n\n{fa-term}`no such term`\n", "'no such term' is not in the glossary"),
        ({}, "# x\n\n```{results-table} chapter9\n```\n", "chapter 'chapter9' is not in"),
    ],
    ids=["missing metric", "corrupt file", "unknown term", "unknown chapter"],
)
def test_the_build_stops_with_a_clear_message(tmp_path, saved, page, message):
    with pytest.raises(Exception, match=re.escape(message)):
        sphinx_build(tmp_path, {"book/fa/03_taylor.md": page}, saved)


def notebook(*cells: tuple[str, str, str]) -> str:
    """A notebook's JSON with ``(id, cell_type, source)`` cells."""
    return json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [
                {"id": i, "cell_type": kind, "metadata": {}, "source": text.splitlines(True)}
                | ({"outputs": [], "execution_count": None} if kind == "code" else {})
                for i, kind, text in cells
            ],
        }
    )


DEMO_NOTEBOOK = notebook(
    ("intro", "markdown", "# Demo\n\n## A section\n"),
    ("c0de", "code", "def score(grad, act):\n    return (grad * act).mean()  # eq. 13\n"),
)
CODE_PAGE = """# فصل 3

امتیاز هر فیلتر را این تابع حساب می‌کند:

```{fa-code} notebooks/demo.ipynb
:cell: c0de
```

هرس {fa-value}`taylor:params_removed_fraction:percent` از پارامترها را برداشت و
سرعت {fa-value}`taylor:deployment.speedup:ratio` شد، با تأخیر
{fa-value}`taylor:deployment.latency:ms`، در گام {fa-value}`taylor:sweep.0.5.step:count`
و با {fa-value}`taylor:criteria.1.name:text`؛ سرعت بی‌بازه {fa-value}`taylor:plain:ratio`.
"""
CODE_METRICS = {
    "params_removed_fraction": 0.8123,
    "accuracy_drop_points": -1.25,
    "deployment": {
        "speedup": 2.5,
        "speedup_interval": [2.25, 2.75],
        "latency": {"median_ms": 1.5, "low_ms": 1.4, "high_ms": 1.7},
    },
    "sweep": {"0.5": {"step": 12345}},
    "criteria": [{"name": "l1"}, {"name": "taylor"}],
    "plain": 3.0,
}


def test_fa_code_shows_the_notebook_cell_and_fa_value_the_saved_metric(tmp_path):
    out = sphinx_build(
        tmp_path,
        {"book/fa/03_taylor.md": CODE_PAGE},
        {"taylor": full_record(CODE_METRICS)},
        {"notebooks/demo.ipynb": DEMO_NOTEBOOK},
    )
    html = (out / "book" / "fa" / "03_taylor.html").read_text()
    block = html[html.index("fa-code-cell") :]
    block = block[: block.index("</pre>")]
    assert "highlight-python" in block, "highlighted as Python"
    code = re.sub(r"<[^>]+>", "", block).replace("&gt;", ">")
    assert "def score(grad, act):" in code and "(grad * act).mean()  # eq. 13" in code
    caption = re.sub(r"<[^>]+>", "", block[: block.index("highlight-python")])
    assert "نوت‌بوک انگلیسی" in caption and "notebooks/demo.ipynb" in caption and "c0de" in caption
    values = re.findall(r'<span class="fa-ltr fa-value">([^<]+)</span>', html)
    assert values == [
        "81.2%",
        "2.50x (2.25-2.75)",
        "1.5 ms (1.4-1.7 ms)",
        "12,345",
        "taylor",
        "3.00x",
    ], "formatted as the table formats them, the interval where one is saved"


def test_fa_value_of_a_chapter_without_a_saved_result_is_labelled(tmp_path):
    page = "# x\n\nهرس {fa-value}`taylor:params_removed_fraction:percent` را برداشت.\n"
    out = sphinx_build(tmp_path, {"book/fa/03_taylor.md": page}, {})
    html = (out / "book" / "fa" / "03_taylor.html").read_text()
    assert '<span class="fa-value fa-no-result">نتیجهٔ اجرای کامل هنوز ذخیره نشده است' in html


def test_a_changed_notebook_is_a_dependency_of_the_page_that_shows_its_code(tmp_path):
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    out = sphinx_build(
        tmp_path,
        {"book/fa/03_taylor.md": CODE_PAGE},
        {"taylor": full_record(CODE_METRICS)},
        {"notebooks/demo.ipynb": DEMO_NOTEBOOK},
    )
    src = tmp_path / "src"
    with patch_docutils(src), docutils_namespace():
        app = Sphinx(src, src, out, out / ".doctrees", "html", status=None,
                     warning=io.StringIO(), warningiserror=True)  # fmt: skip
        depends = app.env.dependencies["book/fa/03_taylor"]
    assert "notebooks/demo.ipynb" in {Path(d).as_posix() for d in depends} or any(
        str(d).endswith("notebooks/demo.ipynb") for d in depends
    )


@pytest.mark.parametrize(
    ("page", "message"),
    [
        (
            "# x\n\n```{fa-code} notebooks/nope.ipynb\n:cell: c0de\n```\n",
            "{fa-code} on page book/fa/03_taylor: no notebook notebooks/nope.ipynb",
        ),
        (
            "# x\n\n```{fa-code} notebooks/demo.ipynb\n:cell: gone\n```\n",
            "{fa-code} on page book/fa/03_taylor: notebook notebooks/demo.ipynb has no cell "
            "with id 'gone'",
        ),
        (
            "# x\n\n```{fa-code} notebooks/demo.ipynb\n:cell: intro\n```\n",
            "cell 'intro' of notebooks/demo.ipynb is a markdown cell",
        ),
        (
            "# x\n\nمقدار {fa-value}`taylor:no.such.key:percent`.\n",
            "results/taylor.json has no metric 'no.such.key' (the Persian page reads it, as "
            "{fa-value} on page book/fa/03_taylor says)",
        ),
        (
            "# x\n\nمقدار {fa-value}`taylor:params_removed_fraction`.\n",
            "{fa-value} on page book/fa/03_taylor: write {fa-value}`<chapter>:<key>:<format>`",
        ),
        (
            "# x\n\nمقدار {fa-value}`taylor:params_removed_fraction:furlongs`.\n",
            "format 'furlongs' of 'params_removed_fraction' is not one of",
        ),
        (
            "# x\n\nمقدار {fa-value}`chapter9:a:percent`.\n",
            "chapter 'chapter9' is not in",
        ),
    ],
    ids=[
        "code: missing notebook",
        "code: missing cell",
        "code: not a code cell",
        "value: missing key",
        "value: no format",
        "value: unknown format",
        "value: unknown chapter",
    ],
)
def test_fa_code_and_fa_value_stop_the_build_with_a_clear_message(tmp_path, page, message):
    with pytest.raises(Exception, match=re.escape(message)):
        sphinx_build(
            tmp_path,
            {"book/fa/03_taylor.md": page},
            {"taylor": full_record(CODE_METRICS)},
            {"notebooks/demo.ipynb": DEMO_NOTEBOOK},
        )


def test_fa_value_of_a_quick_run_stops_the_build(tmp_path):
    record = full_record(CODE_METRICS) | {"profile": "quick"}
    page = "# x\n\nمقدار {fa-value}`taylor:params_removed_fraction:percent`.\n"
    with pytest.raises(Exception, match=re.escape("holds a 'quick' run")):
        sphinx_build(tmp_path, {"book/fa/03_taylor.md": page}, {"taylor": record})


# -- the built book -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_persian_pages_of_the_built_book_show_the_saved_results(persian_book):
    from course_lib.results import load_results

    chapters = spec.load_spec(FA / "results.yml").chapters
    pages = dict(zip(chapters, CHAPTER_PAGES, strict=True))
    for name, page in pages.items():
        html = (persian_book.html / "book" / "fa" / f"{page}.html").read_text()
        assert '<div class="fa-page" dir="rtl" lang="fa">' in html, page
        record = load_results(name)
        if record is None:
            assert "هنوز نتیجهٔ اجرای کامل ذخیره نشده است" in html, page
            continue
        for cell in spec.table(chapters[name], record):
            assert f'<span class="fa-ltr">{cell.value}</span>' in html, (page, cell.key)
        assert "data:image/svg+xml;base64," in html, page
    for page in FA_PAGES:
        html = (persian_book.html / "book" / "fa" / f"{page}.html").read_text()
        text = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
        assert not glossary.PERSIAN_DIGITS.search(text), f"{page}: Persian digits"
    assert (persian_book.html / "_static" / "fonts" / "OFL.txt").exists()
