"""The toolkit's renderer contract (``a2k_toolkit.testing.RendererContract``) on the built-in renderers.

The contract mixins live in ``a2k_toolkit/testing/``; where that package is absent this file is skipped.
"""

from __future__ import annotations

import pytest

testing = pytest.importorskip("a2k_toolkit.testing", reason="a2k_toolkit.testing (contract mixins) not present")

from a2k_toolkit.builtin.side_by_side import SideBySideRenderer  # noqa: E402
from a2k_toolkit.builtin.warp import WarpRenderer  # noqa: E402


class TestWarpContract(testing.RendererContract):
    component_class = WarpRenderer
    params = {"size": 96}


class TestSideBySideContract(testing.RendererContract):
    component_class = SideBySideRenderer
    params = {"size": 64, "panels": ["reference", "sketch", "warp"]}

    def make(self, **extra):  # the panels come from the host's catalog
        from a2k_toolkit.catalog import Catalog
        from a2k_toolkit.plugins import make_plugin_manager

        return Catalog(make_plugin_manager(entry_points=False)).build(
            "renderer", self.component_class.name, {**self.params, **extra}
        )
