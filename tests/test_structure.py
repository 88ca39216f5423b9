"""The package's structure: no import cycles, and the prepared-data layout imports nothing of ours."""

from overfitlab import imports


def test_no_import_cycles_function_level_imports_included():
    assert imports.cycles() == []


def test_the_prepared_data_layout_depends_on_nothing_of_the_package():
    """data/layout.py is the one home of the prepared files' names: every stage may import it."""
    layout = imports.module_file("overfitlab.data.layout")
    assert imports.imported_modules(layout) <= {"overfitlab.errors"}


def test_train_is_wiring_and_long_modules_say_why_they_are_one_file():
    """CONTRIBUTING's claims: train.py at most 150 lines; over 350 lines, the docstring says why."""
    import ast

    assert len((imports.PACKAGE / "train.py").read_text().splitlines()) <= 150
    for path in sorted(imports.PACKAGE.rglob("*.py")):
        if len(path.read_text().splitlines()) > 350:
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "one file" in docstring, f"{path.name} is long: say in its docstring why it is one file"


def test_the_run_record_has_one_home():
    """done.json and failed.json contents are built in runs.py; nothing else spells them."""
    sources = {p: p.read_text() for p in imports.PACKAGE.rglob("*.py")}
    spelled = sorted(
        p.name for p, text in sources.items() if '"failed.json"' in text or '"done.json"' in text
    )
    assert spelled == ["runs.py"]
