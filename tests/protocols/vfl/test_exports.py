import protocols.vfl as vfl


def test_exported_members_exist_and_are_public():
    for name in vfl.__all__:
        assert hasattr(vfl, name), name
    assert sorted(vfl.__all__) == sorted(set(vfl.__all__))
    assert not [n for n in dir(vfl) if not n.startswith("_") and n not in vfl.__all__ and not n.islower()]
