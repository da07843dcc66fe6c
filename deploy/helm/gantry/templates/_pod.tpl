{{/*
The pod template of the server, shared by the StatefulSet (embedded mode) and
the Deployment (external mode). Paths inside the container:
  /var/lib/gantry            --data-dir (PVC in embedded mode, else emptyDir)
  /var/lib/gantry/keys[/mek] master key versions with mek.provider file
  /etc/gantry/...            Secrets, mounted read-only
*/}}
{{- define "gantry.podTemplate" -}}
{{- $v := .Values -}}
{{- $bao := $v.mek.openbao -}}
metadata:
  labels:
    {{- include "gantry.selectorLabels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "gantry.serviceAccountName" . }}
  # The server never calls the Kubernetes API; OpenBao's Kubernetes auth gets
  # its own projected token below.
  automountServiceAccountToken: false
  {{- with $v.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  affinity:
    {{- if $v.affinity }}
    {{- toYaml $v.affinity | nindent 4 }}
    {{- else }}
    podAntiAffinity:
      {{- if eq $v.podAntiAffinity.type "required" }}
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: {{ $v.podAntiAffinity.topologyKey }}
          labelSelector:
            matchLabels:
              {{- include "gantry.selectorLabels" . | nindent 14 }}
      {{- else }}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: {{ $v.podAntiAffinity.weight }}
          podAffinityTerm:
            topologyKey: {{ $v.podAntiAffinity.topologyKey }}
            labelSelector:
              matchLabels:
                {{- include "gantry.selectorLabels" . | nindent 16 }}
      {{- end }}
    {{- end }}
  containers:
    - name: gantry
      image: {{ include "gantry.image" . }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command: [gantry]
      args:
        - server
        - --listen=0.0.0.0:8080
        - --data-dir=/var/lib/gantry
        - --log-level={{ $v.logLevel }}
        - --admin-keys={{ $v.adminKeys }}
        {{- if $v.bootstrapSecret.existingSecret }}
        - --bootstrap-secret-file=/etc/gantry/bootstrap/bootstrap-secret
        {{- end }}
        {{- if eq $v.mode "embedded" }}
        - --nats-listen=0.0.0.0:4222
        {{- else }}
        - --etcd-endpoints={{ join "," $v.etcd.endpoints }}
        - --nats-url={{ $v.nats.url }}
        {{- end }}
        {{- if $v.etcd.tls.existingSecret }}
        - --etcd-ca-file=/etc/gantry/etcd-tls/ca.crt
        - --etcd-cert-file=/etc/gantry/etcd-tls/tls.crt
        - --etcd-key-file=/etc/gantry/etcd-tls/tls.key
        {{- end }}
        {{- if $v.nats.credentials.existingSecret }}
        - --nats-creds-file=/etc/gantry/nats/nats.creds
        {{- end }}
        {{- if $v.nats.tls.existingSecret }}
        - --nats-tls-cert=/etc/gantry/nats-tls/tls.crt
        - --nats-tls-key=/etc/gantry/nats-tls/tls.key
        - --nats-tls-ca=/etc/gantry/nats-tls/ca.crt
        {{- else if eq $v.mode "embedded" }}
        # No nats.tls.existingSecret: NATS is plaintext on the pod network.
        - --nats-insecure
        {{- end }}
        {{- with $v.nats.advertiseURL }}
        - --nats-advertise={{ . }}
        {{- end }}
        {{- if and (eq $v.mode "embedded") $v.nats.leaf.enabled }}
        - --nats-leaf-listen=0.0.0.0:7422
        - --nats-leaf-keys=/etc/gantry/leaf-keys
        {{- end }}
        - --mek-provider={{ $v.mek.provider }}
        {{- if eq $v.mek.provider "openbao" }}
        - --openbao-addr={{ $bao.address }}
        - --openbao-kv-mount={{ $bao.kvMount }}
        - --openbao-kv-path={{ $bao.kvPath }}
        {{- if $bao.token.existingSecret }}
        - --openbao-token-file=/etc/gantry/openbao/token
        {{- else }}
        - --openbao-k8s-role={{ $bao.kubernetes.role }}
        - --openbao-k8s-mount={{ $bao.kubernetes.mount }}
        - --openbao-k8s-jwt-file=/var/run/secrets/gantry/openbao/token
        {{- end }}
        {{- end }}
        {{- range $v.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- if or (and (eq $v.mek.provider "openbao") $bao.caSecret) $v.extraEnv }}
      env:
        {{- if and (eq $v.mek.provider "openbao") $bao.caSecret }}
        - name: BAO_CACERT
          value: /etc/gantry/openbao-ca/ca.crt
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      ports:
        - name: http
          containerPort: 8080
          protocol: TCP
        {{- if eq $v.mode "embedded" }}
        - name: nats
          containerPort: 4222
          protocol: TCP
        {{- if $v.nats.leaf.enabled }}
        - name: nats-leaf
          containerPort: 7422
          protocol: TCP
        {{- end }}
        {{- end }}
      # GET /healthz answers once the HTTP listener is up, which is after the
      # store, bus and secret store have started; GET /readyz only once the
      # function catalog has loaded, so no invocation reaches a replica that
      # cannot resolve functions yet.
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: {{ $v.probes.startup.periodSeconds }}
        failureThreshold: {{ $v.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: {{ $v.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ $v.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        periodSeconds: {{ $v.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ $v.probes.readiness.failureThreshold }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: /var/lib/gantry
        - name: tmp
          mountPath: /tmp
        {{- if $v.bootstrapSecret.existingSecret }}
        - name: bootstrap-secret
          mountPath: /etc/gantry/bootstrap
          readOnly: true
        {{- end }}
        {{- if eq $v.mek.provider "file" }}
        {{- if $v.mek.file.existingClaim }}
        - name: mek-keys
          mountPath: /var/lib/gantry/keys
        {{- else if $v.mek.file.existingSecret }}
        - name: mek-keys
          mountPath: /var/lib/gantry/keys/mek
          readOnly: true
        {{- end }}
        {{- else }}
        {{- if $bao.token.existingSecret }}
        - name: openbao-token
          mountPath: /etc/gantry/openbao
          readOnly: true
        {{- else }}
        - name: openbao-jwt
          mountPath: /var/run/secrets/gantry/openbao
          readOnly: true
        {{- end }}
        {{- if $bao.caSecret }}
        - name: openbao-ca
          mountPath: /etc/gantry/openbao-ca
          readOnly: true
        {{- end }}
        {{- end }}
        {{- if $v.etcd.tls.existingSecret }}
        - name: etcd-tls
          mountPath: /etc/gantry/etcd-tls
          readOnly: true
        {{- end }}
        {{- if $v.nats.credentials.existingSecret }}
        - name: nats-creds
          mountPath: /etc/gantry/nats
          readOnly: true
        {{- end }}
        {{- if $v.nats.tls.existingSecret }}
        - name: nats-tls
          mountPath: /etc/gantry/nats-tls
          readOnly: true
        {{- end }}
        {{- if and (eq $v.mode "embedded") $v.nats.leaf.enabled }}
        - name: leaf-keys
          mountPath: /etc/gantry/leaf-keys
          readOnly: true
        {{- end }}
  volumes:
    {{- if ne $v.mode "embedded" }}
    - name: data
      emptyDir: {}
    {{- end }}
    - name: tmp
      emptyDir: {}
    {{- with $v.bootstrapSecret.existingSecret }}
    - name: bootstrap-secret
      secret:
        secretName: {{ . }}
        defaultMode: 0440
        items:
          - key: {{ $v.bootstrapSecret.key }}
            path: bootstrap-secret
    {{- end }}
    {{- if eq $v.mek.provider "file" }}
    {{- if $v.mek.file.existingClaim }}
    - name: mek-keys
      persistentVolumeClaim:
        claimName: {{ $v.mek.file.existingClaim }}
    {{- else if $v.mek.file.existingSecret }}
    - name: mek-keys
      secret:
        secretName: {{ $v.mek.file.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- else }}
    {{- if $bao.token.existingSecret }}
    - name: openbao-token
      secret:
        secretName: {{ $bao.token.existingSecret }}
        defaultMode: 0440
        items:
          - key: {{ $bao.token.key }}
            path: token
    {{- else }}
    - name: openbao-jwt
      projected:
        sources:
          - serviceAccountToken:
              path: token
              expirationSeconds: 3600
              {{- with $bao.kubernetes.audience }}
              audience: {{ . }}
              {{- end }}
    {{- end }}
    {{- with $bao.caSecret }}
    - name: openbao-ca
      secret:
        secretName: {{ . }}
        defaultMode: 0444
        items:
          - key: ca.crt
            path: ca.crt
    {{- end }}
    {{- end }}
    {{- with $v.etcd.tls.existingSecret }}
    - name: etcd-tls
      secret:
        secretName: {{ . }}
        defaultMode: 0440
    {{- end }}
    {{- with $v.nats.credentials.existingSecret }}
    - name: nats-creds
      secret:
        secretName: {{ . }}
        defaultMode: 0440
        items:
          - key: {{ $v.nats.credentials.key }}
            path: nats.creds
    {{- end }}
    {{- with $v.nats.tls.existingSecret }}
    - name: nats-tls
      secret:
        secretName: {{ . }}
        defaultMode: 0440
        items:
          - {key: ca.crt, path: ca.crt}
          - {key: tls.crt, path: tls.crt}
          - {key: tls.key, path: tls.key}
    {{- end }}
    {{- if and (eq $v.mode "embedded") $v.nats.leaf.enabled }}
    # The sites' public keys in gen-secrets' layout (--nats-leaf-keys).
    - name: leaf-keys
      configMap:
        name: {{ include "gantry.fullname" $ }}-leaf-keys
        {{- with $v.nats.leaf.sites }}
        items:
          {{- range . }}
          - {key: {{ .id | quote }}, path: {{ printf "cpc/%s/nkeys/user/pubkey" .id | quote }}}
          {{- end }}
        {{- end }}
    {{- end }}
{{- end -}}
