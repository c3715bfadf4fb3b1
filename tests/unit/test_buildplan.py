"""The image's inputs and key, the addon scan and its refusals, the recipe (pure, in memory)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from reconciler.core.buildplan import (
    BuildInputError,
    BuildPlan,
    FileTree,
    RepoTree,
    plan_build,
    submodules,
)

SHA = "a" * 64


def manifest(version: str = "19.0.1.0.0", **extra: object) -> bytes:
    return repr({"name": "x", "version": version, **extra}).encode()


def repo(
    files: Mapping[str, bytes],
    name: str = "app",
    links: Mapping[str, str] | None = None,
    gitlinks: Mapping[str, str] | None = None,
    mount: str = "/opt/odooops/app",
) -> RepoTree:
    return RepoTree(FileTree(files, links, gitlinks), name, f"file:///{name}", "c" * 40, mount)


def plan(app: RepoTree, *third: RepoTree, **kw: object) -> BuildPlan:
    return plan_build("acme", "odoo:19.0", "sha256:base", app, third, **kw)  # type: ignore[arg-type]


def oca(files: Mapping[str, bytes], **kw: object) -> RepoTree:
    return repo(files, name="oca/web", mount="/opt/odooops/app/oca/web", **kw)  # type: ignore[arg-type]


def test_scan_finds_addons_at_the_root_and_in_folders_and_builds_the_addons_path() -> None:
    p = plan(
        repo(
            {
                "acme_sale/__manifest__.py": manifest(),
                "addons/acme_stock/__manifest__.py": manifest("1.0"),
                "src/custom/acme_hr/__manifest__.py": manifest("19.0.2.0"),
                "docs/readme.md": b"",
                "acme_sale/models/deep/__manifest__.py": manifest(),  # inside an addon: no
            }
        )
    )
    assert [a.name for a in p.addons] == ["acme_hr", "acme_sale", "acme_stock"]
    assert p.addons_paths == (
        "/opt/odooops/app",
        "/opt/odooops/app/addons",
        "/opt/odooops/app/src/custom",
    )


def test_declared_addons_paths_limit_the_scan_and_a_missing_one_is_refused() -> None:
    app = repo({"a/x/__manifest__.py": manifest(), "b/y/__manifest__.py": manifest()})
    assert [a.name for a in plan(app, addons_paths=("a",)).addons] == ["x"]
    with pytest.raises(BuildInputError) as err:
        plan(app, addons_paths=("c",))
    assert err.value.code == "addons_path_missing"


def test_uninstallable_modules_are_skipped_and_never_clash() -> None:
    app = repo({"x/__manifest__.py": manifest()})
    old = oca({"x/__manifest__.py": manifest("18.0.1.0.0", installable=False)})
    p = plan(app, old)
    assert [(a.name, a.source) for a in p.addons] == [("x", "app")]
    retired = plan(repo({"y/__manifest__.py": manifest(installable=False)}))
    assert retired.addons == () and [a.name for a in retired.uninstallable] == ["y"]
    assert [name for name, _ in retired.addon_trees] == ["y"]  # updated if installed


def test_a_version_of_another_series_is_refused_before_the_build() -> None:
    with pytest.raises(BuildInputError) as err:
        plan(repo({"web_x/__manifest__.py": manifest("18.0.1.0.0")}))
    assert err.value.code == "addon_wrong_series"
    assert "web_x" in err.value.message and "18.0.1.0.0" in err.value.message


@pytest.mark.parametrize("version", ["1.0", "1.0.3", "19.0.1", "19.0.1.0", "19.0.1.0.0"])
def test_versions_odoo_accepts_pass(version: str) -> None:
    assert plan(repo({"m/__manifest__.py": manifest(version)})).addons[0].version == version


@pytest.mark.parametrize("version", ["19.0", "1.0.0.0", "18.0.1.0.0", "1", "1.x", "1.2.3.4.5.6"])
def test_versions_odoo_marks_not_installable_are_refused(version: str) -> None:
    with pytest.raises(BuildInputError) as err:
        plan(repo({"m/__manifest__.py": manifest(version)}))
    assert err.value.code == "addon_wrong_series"


def test_a_module_in_two_repositories_names_both() -> None:
    with pytest.raises(BuildInputError) as err:
        plan(
            repo({"web_x/__manifest__.py": manifest()}), oca({"web_x/__manifest__.py": manifest()})
        )
    assert err.value.code == "duplicate_addon"
    assert "app: web_x" in err.value.message and "oca/web: web_x" in err.value.message


def test_oca_setup_symlinks_are_aliases_not_duplicates() -> None:
    third = oca(
        {"web_x/__manifest__.py": manifest(), "setup/web_x/setup.py": b""},
        links={"setup/web_x/odoo/addons/web_x": "../../../../web_x"},
    )
    p = plan(repo({}), third)
    assert [(a.name, a.path) for a in p.addons] == [("web_x", "web_x")]
    assert p.addons_paths == ("/opt/odooops/app/oca/web",)


def test_a_symlinked_addon_works_and_one_leaving_the_repository_is_ignored() -> None:
    app = repo(
        {"vendor/lib/deep/er/acme_x/__manifest__.py": manifest()},
        links={"addons/acme_x": "../vendor/lib/deep/er/acme_x", "addons/evil": "/etc"},
    )
    p = plan(app)
    assert [(a.name, a.path) for a in p.addons] == [("acme_x", "addons/acme_x")]
    assert p.addons_paths == ("/opt/odooops/app/addons",)


def test_a_manifest_that_is_not_a_literal_is_refused_never_run() -> None:
    with pytest.raises(BuildInputError) as err:
        plan(repo({"m/__manifest__.py": b"__import__('os').system('id')"}))
    assert err.value.code == "invalid_manifest"


def test_python_lock_requirements_lock_first_then_a_hashed_requirements_txt() -> None:
    line = f"requests==2.31.0 \\\n    --hash=sha256:{SHA}\n"
    p = plan(repo({"requirements.lock": line.encode(), "requirements.txt": b"requests\n"}))
    assert p.python is not None and p.python.path == "requirements.lock"
    assert p.python.hashes == {SHA}
    p2 = plan(repo({"requirements.txt": f"# pinned\n{line}".encode()}))
    assert p2.python is not None and p2.python.path == "requirements.txt"
    assert plan(repo({})).python is None


def test_an_unpinned_requirements_txt_without_a_lock_is_refused_with_the_command() -> None:
    with pytest.raises(BuildInputError) as err:
        plan(repo({"requirements.txt": b"requests>=2\n"}))
    assert err.value.code == "requirements_unlocked"
    assert "pip-compile --generate-hashes" in err.value.remediation


@pytest.mark.parametrize(
    "text",
    [
        f"--index-url https://evil.example/simple\nx==1 --hash=sha256:{SHA}\n",
        f"-r other.txt\nx==1 --hash=sha256:{SHA}\n",
        "x==1\n",
        f"x>=1 --hash=sha256:{SHA}\n",
    ],
)
def test_a_lock_with_options_or_unhashed_lines_is_refused(text: str) -> None:
    with pytest.raises(BuildInputError) as err:
        plan(repo({"requirements.lock": text.encode()}))
    assert err.value.code == "invalid_python_lock"


def test_system_packages_are_validated_and_sorted() -> None:
    p = plan(repo({}), system_packages=["libzbar0", "fonts-dejavu=2.37-6"])
    assert p.system_packages == ("fonts-dejavu=2.37-6", "libzbar0")
    with pytest.raises(BuildInputError) as err:
        plan(repo({}), system_packages=["x; rm -rf /"])
    assert err.value.code == "invalid_system_package"


def test_recipe_layers_go_from_least_to_most_often_changed() -> None:
    app = repo({"requirements.lock": f"x==1 --hash=sha256:{SHA}\n".encode()})
    text = plan(app, oca({}), system_packages=["libzbar0"], wheelhouse=True).dockerfile
    order = ["apt-get install", "pip install", "COPY --from=python", "COPY layers/opt_odooops_app_"]
    positions = [text.index(s) for s in [*order, "COPY layers/opt_odooops_app/ /"]]
    assert positions == sorted(positions)
    assert "--require-hashes" in text and "--no-index --find-links" in text
    assert text.rstrip().endswith("USER odoo")


def test_key_covers_every_input_and_nothing_else() -> None:
    files = {"m/__manifest__.py": manifest()}
    one = plan(repo(files))
    assert one.key == plan(repo(dict(files))).key  # same inputs, same key
    assert one.tag == f"odooops/acme:{one.key[:16]}"
    changed = [
        plan(repo({**files, "m/models.py": b"x = 1"})),  # own code
        plan(repo(files), oca({})),  # a third-party tree
        plan(repo({**files, "requirements.lock": f"x==1 --hash=sha256:{SHA}".encode()})),
        plan(repo(files), system_packages=["libzbar0"]),
        plan_build("acme", "odoo:19.0", "sha256:other", repo(files), ()),  # base image
    ]
    assert len({one.key, *(c.key for c in changed)}) == 6


def test_an_app_dockerfile_builds_the_base_stage() -> None:
    p = plan(repo({"Dockerfile": b"ARG ODOO_IMAGE\nFROM $ODOO_IMAGE\n"}))
    assert p.app_base.startswith("odooops/acme-base:")
    assert p.dockerfile.startswith(f"FROM {p.app_base} AS system")


def test_submodules_come_from_gitmodules_and_the_pinned_gitlinks() -> None:
    tree = FileTree(
        {
            ".gitmodules": b'[submodule "web"]\n\tpath = oca/web\n\turl = ../web.git\n'
            b'[submodule "gone"]\n\tpath = gone\n\turl = https://x/gone.git\n'
            b'[submodule "evil"]\n\tpath = ../out\n\turl = https://x/e.git\n',
        },
        gitlinks={"oca/web": "d" * 40},
    )
    (sub,) = submodules(tree)
    assert (sub.path, sub.url, sub.commit) == ("oca/web", "../web.git", "d" * 40)


def declared(files: Mapping[str, bytes], only: tuple[str, ...] | None) -> RepoTree:
    return RepoTree(
        FileTree(files), "server-tools", "https://x/st.git", "e" * 40, "/opt/odooops/repos/st", only
    )


def test_a_declared_repository_with_an_addons_list_brings_just_those() -> None:
    files = {
        "base_a/__manifest__.py": manifest(),
        "nested/base_b/__manifest__.py": manifest(),
        "base_c/__manifest__.py": manifest("18.0.1.0.0"),  # not picked: never checked
    }
    p = plan(repo({}), declared(files, ("base_b", "base_a")))
    assert [(a.name, a.path) for a in p.addons] == [("base_a", "base_a"), ("base_b", "base_b")]
    assert "/opt/odooops/repos/st" in p.addons_paths
    (source,) = (s for s in p.sources if not s.own)
    assert source.only == (("base_a", "base_a"), ("nested/base_b", "base_b"))
    everything = plan(repo({}), declared({"base_a/__manifest__.py": manifest()}, None))
    assert everything.key != plan(repo({}), declared(files, ("base_a",))).key
    with pytest.raises(BuildInputError) as err:
        plan(repo({}), declared(files, ("base_z",)))
    assert err.value.code == "addon_not_found" and "base_z" in err.value.message
