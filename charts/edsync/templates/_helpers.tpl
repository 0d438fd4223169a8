{{/* The release's name for edsync's objects, at most 63 characters. */}}
{{- define "edsync.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "edsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "edsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "edsync.labels" -}}
{{ include "edsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "edsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "edsync.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "edsync.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
edsync's --config file: the config values, with the output folder the
chart mounts. The schema refuses output-dir and http-addr in .Values.config.
*/}}
{{- define "edsync.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $_ := set $config "output-dir" .Values.files.mountPath -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
edsync's read access where Services are: list and watch only (the
informers' first sync and the changes after it); nothing is written to the
API server. Services only with watch-services.
*/}}
{{- define "edsync.readRules" }}
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
{{- if index .Values.config "watch-services" }}
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
