{{/* Name of the chart, overridable. */}}
{{- define "prewarm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the prefix of every object name. */}}
{{- define "prewarm.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "prewarm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "prewarm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: prewarm
{{- end }}

{{/* Selector labels of the operator pod. */}}
{{- define "prewarm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prewarm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Selector labels of the bundled PostgreSQL pod. */}}
{{- define "prewarm.postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prewarm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: postgresql
{{- end }}

{{- define "prewarm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prewarm.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "prewarm.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Prometheus job of the operator's metrics: the metrics Service's name, which is
     what the chart's ServiceMonitor gives (no jobLabel), unless prometheusRule.job says. */}}
{{- define "prewarm.metricsJob" -}}
{{- default (printf "%s-metrics" (include "prewarm.fullname" .)) .Values.prometheusRule.job }}
{{- end }}

{{- define "prewarm.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "prewarm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "prewarm.postgresql.secretName" -}}
{{- default (include "prewarm.postgresql.fullname" .) .Values.postgresql.auth.existingSecret }}
{{- end }}

{{/* Whether the templates see a cluster: `lookup` answers nothing under `helm template`,
     `helm install --dry-run=client`, Argo CD and deploy/generate.sh, and kube-system
     exists in every cluster. Empty when offline. */}}
{{- define "prewarm.clusterReachable" -}}
{{- if lookup "v1" "Namespace" "" "kube-system" }}true{{ end }}
{{- end }}

{{/* What the chart does about the bundled PostgreSQL's password Secret (when
     postgresql.auth.existingSecret is empty), one of:
       given    - postgresql.auth.password is set: the chart's Secret holds it;
       kept     - this release's Secret exists: the chart renders it again with its password;
       external - a Secret of that name exists that this release does not own (created by
                  hand, e.g. for deploy/prewarm.yaml): the chart leaves it alone and uses it;
       offline  - no cluster to look at (helm template, Argo CD): the chart renders no Secret,
                  so no render ever carries a fresh password; it must exist (docs/install.md);
       new      - helm install on a cluster where there is none: a random password, in a
                  Secret kept on uninstall (the PVC is kept too, and needs it).
     docs/decisions.md, "A password that never rotates by itself", says why. */}}
{{- define "prewarm.postgresql.passwordSource" -}}
{{- if .Values.postgresql.auth.password }}given
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "prewarm.postgresql.fullname" .) }}
{{- if $existing }}
{{- $owner := dig "metadata" "annotations" "meta.helm.sh/release-name" "" $existing }}
{{- $ownerNs := dig "metadata" "annotations" "meta.helm.sh/release-namespace" "" $existing }}
{{- if and (eq $owner .Release.Name) (eq $ownerNs .Release.Namespace) (hasKey ($existing.data | default dict) "password") }}kept
{{- else }}external
{{- end }}
{{- else if include "prewarm.clusterReachable" . }}new
{{- else }}offline
{{- end }}
{{- end }}
{{- end }}

{{/* The password the chart's Secret carries (sources given, kept and new only). */}}
{{- define "prewarm.postgresql.password" -}}
{{- $source := include "prewarm.postgresql.passwordSource" . }}
{{- if eq $source "given" }}
{{- .Values.postgresql.auth.password }}
{{- else if eq $source "kept" }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "prewarm.postgresql.fullname" .) }}
{{- index $existing.data "password" | b64dec }}
{{- else if eq $source "new" }}
{{- randAlphaNum 32 }}
{{- else }}
{{- fail (printf "prewarm.postgresql.password: no password to render (source %s)" $source) }}
{{- end }}
{{- end }}

{{/* The verbs on pods, secrets and co. that the operator needs in a namespace (one list for
     the ClusterRole and the per-namespace Roles; charts/prewarm/README.md says why). */}}
{{- define "prewarm.rbac.rules" -}}
- apiGroups: [prewarm.dev]
  resources: [presets]
  verbs: [get, list, watch]
- apiGroups: [prewarm.dev]
  resources: [presets/status]
  verbs: [patch]
- apiGroups: [prewarm.dev]
  resources: [prebuiltworkspaces]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [prewarm.dev]
  resources: [prebuiltworkspaces/status]
  verbs: [patch]
- apiGroups: [prewarm.dev]
  resources: [workspaceclaims]
  verbs: [get, list, watch]
- apiGroups: [prewarm.dev]
  resources: [workspaceclaims/status]
  verbs: [patch]
- apiGroups: [prewarm.dev]
  resources: [presets/finalizers, prebuiltworkspaces/finalizers, workspaceclaims/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, patch]
# Never used by the operator: RBAC lets it grant a workspace's agent get and create
# on pods/exec of that one pod (the hook runs in the workspace) only if it holds them.
- apiGroups: [""]
  resources: [pods/exec]
  verbs: [get, create]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [create]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}
