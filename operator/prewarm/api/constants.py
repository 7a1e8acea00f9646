"""Names of the API: group, version, plurals, and the label/annotation keys.

Every key lives under the prefix `prewarm.dev/` so a `kubectl get -l` or an
audit search finds everything the operator wrote.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "prewarm.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

KIND_PRESET: Final = "Preset"
KIND_PREBUILT_WORKSPACE: Final = "PrebuiltWorkspace"
KIND_WORKSPACE_CLAIM: Final = "WorkspaceClaim"

PLURAL_PRESETS: Final = "presets"
PLURAL_PREBUILT_WORKSPACES: Final = "prebuiltworkspaces"
PLURAL_WORKSPACE_CLAIMS: Final = "workspaceclaims"

PLURALS: Final[dict[str, str]] = {
    KIND_PRESET: PLURAL_PRESETS,
    KIND_PREBUILT_WORKSPACE: PLURAL_PREBUILT_WORKSPACES,
    KIND_WORKSPACE_CLAIM: PLURAL_WORKSPACE_CLAIMS,
}

SHORT_NAMES: Final[dict[str, str]] = {
    KIND_PRESET: "pset",
    KIND_PREBUILT_WORKSPACE: "pws",
    KIND_WORKSPACE_CLAIM: "wsc",
}

CATEGORY: Final = "prewarm"

PREFIX: Final = f"{GROUP}/"

# Labels: selectable, so they carry only short identifiers.
LABEL_PRESET: Final = f"{PREFIX}preset"
"""Name of the Preset a PrebuiltWorkspace (and its Pod) belongs to."""
LABEL_TEMPLATE_HASH: Final = f"{PREFIX}template-hash"
"""template_hash() of the preset spec the workspace was built from."""
LABEL_WORKSPACE: Final = f"{PREFIX}workspace"
"""On a Pod: the PrebuiltWorkspace that owns it."""
LABEL_CLAIM: Final = f"{PREFIX}claim"
"""On a claimed PrebuiltWorkspace / Pod: the WorkspaceClaim that took it."""

# Annotations: free text, not selectable.
ANNOTATION_OWNER: Final = f"{PREFIX}owner"
"""On a Pod: the owner the agent must re-initialise for. Never a credential."""
ANNOTATION_REINIT_GENERATION: Final = f"{PREFIX}reinit-generation"
"""On a Pod: monotonic counter; the agent runs the onClaim hook once per value."""
ANNOTATION_CLAIM_PARAMETERS: Final = f"{PREFIX}claim-parameters"
"""On a Pod, written with owner and generation: the claim's parameters (a JSON
object of name to string value, the preset's defaults filled in; absent when
there are none). The agent hands them to the hook as PREWARM_PARAMETERS_FILE.
Not secret: parameters are plain configuration."""
ANNOTATION_RETRY: Final = f"{PREFIX}retry"
"""On a Preset: a new value lifts a hard limit (an explicit, audited retry)."""
ANNOTATION_PAUSED: Final = f"{PREFIX}paused"
"""On a Preset: "true" stops creating and deleting its prebuilds."""
