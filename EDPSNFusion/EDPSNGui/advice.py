"""A failed command's message in the module's words: the options an error advises, named as
the module's widgets name them (the ``edpsn`` commands name them as command-line flags)."""

from EDPSNGui.choices import Registration


def gui_option(name, value):
    """An advised option as the EDPSN Fusion widgets show it, or as the command-line flag
    when the module has no widget for it."""
    if name == "method":
        try:
            return f"Registration '{Registration(value).label()}'"
        except ValueError:
            pass
    flag = f"--{name.replace('_', '-')}" + ("" if value is True else f" {value}")
    return f"'{flag}' (option of the command line 'edpsn fuse', not in this module)"


def gui_message(event):
    """The message of an "error" event of ``--json-progress``, in the module's words."""
    template, options = event.get("template"), event.get("options") or []
    try:
        return template.format(*(gui_option(name, value) for name, value in options))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return str(event.get("message", ""))
