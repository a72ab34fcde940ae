{{/* Names ------------------------------------------------------------------------ */}}

{{- define "zyra.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "zyra.fullname" -}}
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

{{/* Labels: common, and the selector of one component (api, redis, minio). */}}
{{- define "zyra.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "zyra.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: zyra-orchestrator
{{- end -}}

{{- define "zyra.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zyra.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "zyra.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "zyra.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "zyra.runnerServiceAccountName" -}}
{{- default (printf "%s-runner" (include "zyra.fullname" .)) .Values.runner.serviceAccountName -}}
{{- end -}}

{{- define "zyra.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The sync executor's socket, and the volume the API shares job folders on: the same
paths in both containers of the API pod. */}}
{{- define "zyra.syncSocketDir" -}}/run/zyra-sync{{- end -}}
{{- define "zyra.syncSocket" -}}/run/zyra-sync/executor.sock{{- end -}}
{{- define "zyra.workVolumeDir" -}}/var/lib/zyra-work{{- end -}}

{{/* Secrets: name and key of each credential the API reads. */}}

{{- define "zyra.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "zyra.fullname" .)) .Values.apiKeys.existingSecret -}}
{{- end -}}

{{- define "zyra.redisSecret" -}}
{{- if and (not .Values.redis.deploy.enabled) .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecret -}}
{{- else -}}
{{- printf "%s-redis" (include "zyra.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "zyra.redisSecretKey" -}}
{{- if and (not .Values.redis.deploy.enabled) .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecretKey -}}
{{- else -}}
redis-url
{{- end -}}
{{- end -}}

{{/* S3 credentials: the in-release MinIO's, an existing Secret's, or the chart's own. */}}
{{- define "zyra.s3HasCredentials" -}}
{{- if or .Values.minio.deploy.enabled .Values.s3.existingSecret .Values.s3.accessKey -}}true{{- end -}}
{{- end -}}

{{- define "zyra.s3Secret" -}}
{{- if and (not .Values.minio.deploy.enabled) .Values.s3.existingSecret -}}
{{- .Values.s3.existingSecret -}}
{{- else -}}
{{- printf "%s-s3" (include "zyra.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "zyra.s3AccessKeyKey" -}}
{{- if and (not .Values.minio.deploy.enabled) .Values.s3.existingSecret -}}
{{- .Values.s3.existingSecretAccessKeyKey -}}
{{- else -}}
access-key
{{- end -}}
{{- end -}}

{{- define "zyra.s3SecretKeyKey" -}}
{{- if and (not .Values.minio.deploy.enabled) .Values.s3.existingSecret -}}
{{- .Values.s3.existingSecretSecretKeyKey -}}
{{- else -}}
secret-key
{{- end -}}
{{- end -}}

{{- define "zyra.s3EndpointUrl" -}}
{{- if .Values.minio.deploy.enabled -}}
{{- printf "http://%s-minio:9000" (include "zyra.fullname" .) -}}
{{- else -}}
{{- .Values.s3.endpointUrl -}}
{{- end -}}
{{- end -}}

{{/*
A generated secret value that survives upgrades: the value already in the cluster's
Secret when there is one (`lookup` is empty under `helm template`), else a new one.
Args: dict root, secret (name), key.
*/}}
{{- define "zyra.generated" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}

{{/* Fail early, with the value to set, when a required dependency is missing. */}}
{{- define "zyra.validate" -}}
{{- if and .Values.oauth2.issuer (not .Values.oauth2.audience) -}}
{{- fail "oauth2.issuer needs oauth2.audience: the `aud` values this service's tokens carry" -}}
{{- end -}}
{{- if and (not .Values.redis.deploy.enabled) (not .Values.redis.url) (not .Values.redis.existingSecret) -}}
{{- fail "Redis is required: set redis.url or redis.existingSecret, or redis.deploy.enabled=true" -}}
{{- end -}}
{{- if and .Values.s3.accessKey (not .Values.s3.secretKey) -}}
{{- fail "s3.accessKey is set without s3.secretKey" -}}
{{- end -}}
{{- if not .Values.podSecurityContext.fsGroup -}}
{{- fail "podSecurityContext.fsGroup is required: the API and its sync executor share job folders through that group" -}}
{{- end -}}
{{- if eq (int .Values.syncExecutor.runAsUser) (int (.Values.podSecurityContext.runAsUser | default 0)) -}}
{{- fail "syncExecutor.runAsUser must not be the API's uid (podSecurityContext.runAsUser)" -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the metrics scrape token: the operator's, or the generated one. */}}
{{- define "zyra.metricsSecret" -}}
{{- default (printf "%s-metrics" (include "zyra.fullname" .)) .Values.metrics.existingSecret -}}
{{- end -}}
