import pytest

from synthsight.registry import BACKBONES, GENERATORS, METHODS, Registry, UnknownNameError


def test_register_create_and_names():
    reg = Registry("widget")

    @reg.register("b")
    def make_b(x=1):
        return ("b", x)

    reg.register("a")(lambda: "a")
    assert reg.names() == ["a", "b"]
    assert reg.create("b", x=3) == ("b", 3)
    assert "a" in reg and "c" not in reg


def test_duplicate_registration_is_an_error():
    reg = Registry("widget")
    reg.register("a")(object)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(object)


def test_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(UnknownNameError) as err:
        GENERATORS.get("dead_leave")
    msg = str(err.value)
    assert "did you mean 'dead_leaves'" in msg
    for name in GENERATORS.names():
        assert name in msg


def test_registries_are_populated():
    import synthsight.generators  # noqa: F401
    import synthsight.methods  # noqa: F401
    import synthsight.models.backbones  # noqa: F401

    assert {"dead_leaves", "spectrum"} <= set(GENERATORS.names())
    assert "simclr" in METHODS.names()
    assert {"smallconv", "resnet18"} <= set(BACKBONES.names())
