package v1alpha1

// Condition types. Ready summarises the others: it is True only when every one of them is.
const (
	ConditionReady              = "Ready"
	ConditionDirectoryReachable = "DirectoryReachable"
	ConditionContainerReady     = "ContainerReady"
	ConditionAccessControlled   = "AccessControlled"
	ConditionKeyReady           = "KeyReady"
	ConditionReplicasProjected  = "ReplicasProjected"
)

// Condition reasons. They are stable: alerts, GitOps health checks and the README refer to them.
const (
	// ReasonReady: the condition holds.
	ReasonReady = "Ready"
	// ReasonReconciling: the operator has not finished its first pass for this generation.
	ReasonReconciling = "Reconciling"
	// ReasonBlocked: an earlier phase failed, so this one was not evaluated.
	ReasonBlocked = "Blocked"

	// DirectoryReachable reasons.
	ReasonBindSecretMissing  = "BindSecretMissing"
	ReasonBindSecretInvalid  = "BindSecretInvalid"
	ReasonCABundleInvalid    = "CABundleInvalid"
	ReasonInvalidCredentials = "InvalidCredentials"
	ReasonTLSError           = "TLSError"
	ReasonDirectoryDown      = "DirectoryUnavailable"
	ReasonInvalidConfig      = "InvalidDirectoryConfig"
	ReasonUnknownAccount     = "UnknownServiceAccount"
	ReasonInvalidAccount     = "InvalidServiceAccount"

	// ContainerReady reasons.
	ReasonInvalidPath       = "InvalidPath"
	ReasonParentMissing     = "ParentMissing"
	ReasonContainerMissing  = "ContainerMissing"
	ReasonInsufficientRight = "InsufficientRights"
	ReasonDirectoryError    = "DirectoryError"

	// AccessControlled reasons.
	ReasonDriftRepaired = "DriftRepaired"
	ReasonDriftDetected = "DriftDetected"

	// KeyReady reasons.
	ReasonKEKSecretMissing   = "KEKSecretMissing"
	ReasonKEKInvalid         = "KEKInvalid"
	ReasonKeyLost            = "KeyLost"
	ReasonMultipleKeyObjects = "MultipleKeyObjects"
	ReasonKeyUnreadable      = "KeyUnreadable"
	ReasonKeyCreated         = "KeyCreated"
	ReasonKeyRotated         = "KeyRotated"
	ReasonRegenerateMismatch = "RegenerateMismatch"

	// ReplicasProjected reasons.
	ReasonKeysNotLoaded    = "KeysNotLoaded"
	ReasonNoReplicas       = "NoReplicasConfigured"
	ReasonProjectionFailed = "ProjectionFailed"
)

// Annotations a person sets on a DKMContainer or a pod.
const (
	// AnnotationInject on a pod names the DKMContainer whose key Secret the webhook mounts.
	AnnotationInject = "dkm.io/inject"
	// AnnotationMountPath on a pod overrides where the key Secret is mounted.
	AnnotationMountPath = "dkm.io/mount-path"

	// AnnotationRegenerateLostKey, set to the ID of a key reported KeyLost, allows the operator to
	// create a new key. It must name the lost key so that it cannot be applied by accident to a
	// different loss; the operator removes nothing and records the new key in status.
	AnnotationRegenerateLostKey = "dkm.io/regenerate-lost-key"
)
