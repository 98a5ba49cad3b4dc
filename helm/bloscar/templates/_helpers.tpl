{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "bloscar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: <release>-<chart> unless the release name already holds it. */}}
{{- define "bloscar.fullname" -}}
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

{{/* Labels every resource of the chart carries. */}}
{{- define "bloscar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bloscar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the example's pods (both server and client). */}}
{{- define "bloscar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bloscar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Pods the Service targets: the example server, else service.selector. Empty: none. */}}
{{- define "bloscar.serviceSelector" -}}
{{- if .Values.example.enabled }}
{{ include "bloscar.selectorLabels" . }}
app.kubernetes.io/component: server
{{- else if .Values.service.selector }}
{{ toYaml .Values.service.selector }}
{{- end }}
{{- end }}
