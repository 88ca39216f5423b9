"""The package's structure: no import cycles, and the prepared-data layout imports nothing of ours."""

from overfitlab import imports


def test_no_import_cycles_function_level_imports_included():
    assert imports.cycles() == []


def test_the_prepared_data_layout_depends_on_nothing_of_the_package():
    """data/layout.py is the one home of the prepared files' names: every stage may import it."""
    layout = imports.module_file("overfitlab.data.layout")
    assert imports.imported_modules(layout) <= {"overfitlab.errors"}
