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

	// ReasonAccountLockedOut: AD refused the bind because the bind account is locked out (too
	// many failed logons; AD's "data 775"). A domain admin must unlock it.
	ReasonAccountLockedOut = "AccountLockedOut"

	// ContainerReady reasons.
	ReasonInvalidPath       = "InvalidPath"
	ReasonParentMissing     = "ParentMissing"
	ReasonContainerMissing  = "ContainerMissing"
	ReasonInsufficientRight = "InsufficientRights"
	ReasonDirectoryError    = "DirectoryError"
	// ReasonContainerNotOwned: the container exists without this operator's ownership record
	// (or with something else in adminDescription); nothing is written until it is claimed.
	ReasonContainerNotOwned = "ContainerNotOwned"
	// ReasonNotDKMContainer: spec.path names an object that is not a DKM container (another
	// class, or a container holding other objects): nothing is written.
	ReasonNotDKMContainer = "NotDKMContainer"

	// AccessControlled reasons.
	ReasonDriftRepaired = "DriftRepaired"
	// ReasonDriftDetected is the event an Audit reconcile emits for drift it does not repair:
	// Normal while the DACL is still safe, Warning when it is not. It was AccessControlled's
	// reason for any Audit drift before the safe-DACL gate; the condition now says SafeDACL or
	// UnsafeDACL.
	ReasonDriftDetected = "DriftDetected"
	// ReasonSafeDACL (True): the DACL is not the template but is safe (protected, and no one
	// outside the template principals, the service accounts and the operator can read a key);
	// keys are written. Audit only: Enforce writes the template back instead.
	ReasonSafeDACL = "SafeDACL"
	// ReasonUnsafeDACL: the DACL lets someone else read a key, or is not protected. On
	// AccessControlled (False, Audit) it names the offending ACEs; on KeyReady (False, any
	// policy) it says no key is created, rotated or re-wrapped until the DACL is safe, while an
	// existing key is still read and served to replicas.
	ReasonUnsafeDACL = "UnsafeDACL"

	// KeyReady reasons.
	ReasonKEKSecretMissing   = "KEKSecretMissing"
	ReasonKEKInvalid         = "KEKInvalid"
	ReasonKeyLost            = "KeyLost"
	ReasonMultipleKeyObjects = "MultipleKeyObjects"
	ReasonKeyUnreadable      = "KeyUnreadable"
	ReasonKeyCreated         = "KeyCreated"
	ReasonKeyRotated         = "KeyRotated"
	// ReasonKeyRestored: a lost key was written back to AD (same ID, same bytes) from the copy
	// the operator or a replica held, on the restore annotation.
	ReasonKeyRestored        = "KeyRestored"
	ReasonRegenerateMismatch = "RegenerateMismatch"
	// ReasonWaitingForOwner: a reader found no key yet; the owner creates it.
	ReasonWaitingForOwner = "WaitingForOwner"
	// ReasonKeyWriteRaced: another writer changed the DC Manager or CryptoPolicy first; the
	// next reconcile reads what it wrote.
	ReasonKeyWriteRaced = "KeyWriteRaced"
	// ReasonKeysFromReplicaSecrets (KeyReady Unknown): AD has not been read since the operator
	// started; the key versions recorded in status are served to new replicas from the existing
	// replica Secrets, each one checked against its recorded fingerprint, until AD answers.
	ReasonKeysFromReplicaSecrets = "KeysFromReplicaSecrets"
	// ReasonInvalidRotationPeriod: spec.rotation.period is below MinRotationPeriod (stored before
	// the API server checked it). Keys are loaded and served; nothing is rotated until it is fixed.
	ReasonInvalidRotationPeriod = "InvalidRotationPeriod"
	// ReasonKeyNotReplicated: a new key (or a re-wrapped one) is written but not yet read back
	// from spec.directory.minKeyCopies domain controllers; it is not active, recorded or
	// projected until it is. The message names the DCs that hold it.
	ReasonKeyNotReplicated = "KeyNotReplicated"
	// ReasonReplicationLag: the DC in use lacks a key, DC Manager or container that another DC
	// holds (replication has not caught up); nothing is concluded or written until it has.
	ReasonReplicationLag = "ReplicationLag"
	// ReasonDCUnavailable: a configured DC did not answer, and what the operator was about to
	// conclude (KeyLost) or write (a first key, a rotation, a container) needs every DC's
	// answer; nothing is concluded or written until it answers.
	ReasonDCUnavailable = "DCUnavailable"
	// ReasonReplicationConflict is the Warning event for objects AD's replication conflict
	// resolution renamed (CNF in the name): they are reported, never used and never deleted.
	ReasonReplicationConflict = "ReplicationConflict"

	// ReasonChangesPendingApproval: spec.changeApproval is Manual and the changes this phase
	// needs wait for a person to approve them (status.changes.pending has the plan and its
	// hash). Existing keys are still read and served.
	ReasonChangesPendingApproval = "ChangesPendingApproval"

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

	// AnnotationRestoreLostKey, set to the ID of a key reported KeyLost, writes that same key
	// (same ID, same bytes, sealed for the container as it now is) back to AD from the copy the
	// operator holds in memory or a replica's key Secret holds, once that copy matches the
	// fingerprint status recorded. The KeyLost message says when such a copy exists.
	AnnotationRestoreLostKey = "dkm.io/restore-lost-key"

	// AnnotationClaim, set to the objectGUID of an existing container that has no ownership
	// record, lets a Create-mode DKMContainer record itself as its owner and manage it.
	AnnotationClaim = "dkm.io/claim"

	// AnnotationTakeOwnership, set to the UID of the DKMContainer currently recorded as the
	// owner (status.owner shows it), moves ownership to this DKMContainer: for when the owner,
	// or its whole cluster, is gone. The move is a compare-and-swap on the record in AD.
	AnnotationTakeOwnership = "dkm.io/take-ownership"

	// AnnotationApproveChanges, set to the hash of the plan status.changes.pending shows,
	// approves exactly those AD changes (spec.changeApproval Manual).
	AnnotationApproveChanges = "dkm.io/approve-changes"
)
