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

{{- define "prewarm.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "prewarm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "prewarm.postgresql.secretName" -}}
{{- default (include "prewarm.postgresql.fullname" .) .Values.postgresql.auth.existingSecret }}
{{- end }}

{{/* The password of the bundled PostgreSQL: given, kept from the existing Secret, or new. */}}
{{- define "prewarm.postgresql.password" -}}
{{- if .Values.postgresql.auth.password }}
{{- .Values.postgresql.auth.password }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "prewarm.postgresql.fullname" .) }}
{{- if and $existing $existing.data (hasKey $existing.data "password") }}
{{- index $existing.data "password" | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
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
