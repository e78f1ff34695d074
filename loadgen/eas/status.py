"""EAS status codes with their names and meanings.

Sources: MS-ASPROV 2.2.2.54.1/2.2.2.54.2 (Provision and Policy Status),
MS-ASCMD 2.2.2 (common status codes 101-177; names as in
docs/protocol-notes.md, Common statuses 101-177, from grommunio-sync gsyncdefs.php),
MS-ASCMD 2.2.3.177.11 (Ping) and 2.2.3.177.5 (FolderSync), MS-ASPROV 2.2.2.54.1 and 3.1.5.2 (client
acknowledgement statuses 1-4 and statuses 139-145).
"""

from enum import IntEnum


class ProvisionStatus(IntEnum):
    """Provision/Status in a response (MS-ASPROV 2.2.2.54.2)."""

    SUCCESS = 1
    PROTOCOL_ERROR = 2
    GENERAL_SERVER_ERROR = 3  # transient: retry over a period of time


class PolicyStatus(IntEnum):
    """Policy/Status in a server response (MS-ASPROV 2.2.2.54.1)."""

    SUCCESS = 1
    NO_POLICY = 2  # no second request needed; proceed to sync
    UNKNOWN_POLICY_TYPE = 3
    POLICY_DATA_CORRUPT = 4
    POLICY_KEY_MISMATCH = 5  # restart provisioning from key 0


class AckStatus(IntEnum):
    """Policy/Status in the client's acknowledgement (MS-ASPROV 2.2.2.54.1)."""

    SUCCESS = 1
    PARTIAL_SUCCESS = 2
    FAILURE = 3
    EXTERNALLY_MANAGED = 4


class RemoteWipeAck(IntEnum):
    """RemoteWipe/Status sent by the client (MS-ASPROV 2.2.2.54.3)."""

    SUCCESS = 1
    FAILURE = 2


class CommonStatus(IntEnum):
    """Common status codes of every command (MS-ASCMD 2.2.2)."""

    InvalidContent = 101
    InvalidWBXML = 102
    InvalidXML = 103
    InvalidDateTime = 104
    InvalidCombinationOfIDs = 105
    InvalidIDs = 106
    InvalidMIME = 107
    DeviceIdMissingOrInvalid = 108
    DeviceTypeMissingOrInvalid = 109
    ServerError = 110
    ServerErrorRetryLater = 111
    ActiveDirectoryAccessDenied = 112
    MailboxQuotaExceeded = 113
    MailboxServerOffline = 114
    SendQuotaExceeded = 115
    MessageRecipientUnresolved = 116
    MessageReplyNotAllowed = 117
    MessagePreviouslySent = 118
    MessageHasNoRecipient = 119
    MailSubmissionFailed = 120
    MessageReplyFailed = 121
    AttachmentIsTooLarge = 122
    UserHasNoMailbox = 123
    UserCannotBeAnonymous = 124
    UserPrincipalCouldNotBeFound = 125
    UserDisabledForSync = 126
    UserOnNewMailboxCannotSync = 127
    UserOnLegacyMailboxCannotSync = 128
    DeviceIsBlockedForThisUser = 129
    AccessDenied = 130
    AccountDisabled = 131
    SyncStateNotFound = 132
    SyncStateLocked = 133
    SyncStateCorrupt = 134
    SyncStateAlreadyExists = 135
    SyncStateVersionInvalid = 136
    CommandNotSupported = 137
    VersionNotSupported = 138
    DeviceNotFullyProvisionable = 139
    RemoteWipeRequested = 140
    LegacyDeviceOnStrictPolicy = 141
    DeviceNotProvisioned = 142
    PolicyRefresh = 143
    InvalidPolicyKey = 144
    ExternallyManagedDevicesNotAllowed = 145
    NoRecurrenceInCalendar = 146
    UnexpectedItemClass = 147
    RemoteServerHasNoSSL = 148
    InvalidStoredRequest = 149
    ItemNotFound = 150
    TooManyFolders = 151
    NoFoldersFound = 152
    ItemsLostAfterMove = 153
    FailureInMoveOperation = 154
    MoveCommandDisallowedForNonPersistentMoveAction = 155
    MoveCommandInvalidDestinationFolder = 156
    AvailabilityTooManyRecipients = 160
    AvailabilityDLLimitReached = 161
    AvailabilityTransientFailure = 162
    AvailabilityFailure = 163
    BodyPartPreferenceTypeNotSupported = 164
    DeviceInformationRequired = 165
    InvalidAccountId = 166
    AccountSendDisabled = 167
    IRM_FeatureDisabled = 168
    IRM_TransientError = 169
    IRM_PermanentError = 170
    IRM_InvalidTemplateID = 171
    IRM_OperationNotPermitted = 172
    NoPicture = 173
    PictureTooLarge = 174
    PictureLimitReached = 175
    BodyPart_ConversationTooLarge = 176
    MaximumDevicesReached = 177


# : Statuses that send the device to Provision at once (140 wipe, 142, 143, 144; docs/protocol-notes.md, 449 vs
# in-band statuses 139-145 and how Exchange chooses).
REPROVISION_STATUSES = frozenset({CommonStatus.RemoteWipeRequested, CommonStatus.DeviceNotProvisioned,
                                  CommonStatus.PolicyRefresh, CommonStatus.InvalidPolicyKey})
# : Provisioning refused until the administrator changes the policy: retry hourly (MS-ASPROV 3.1.5.2;
# docs/protocol-notes.md, 449 vs in-band statuses 139-145 and how Exchange chooses).
REFUSED_STATUSES = frozenset({CommonStatus.DeviceNotFullyProvisionable, CommonStatus.LegacyDeviceOnStrictPolicy,
                              CommonStatus.ExternallyManagedDevicesNotAllowed})


class PingStatus(IntEnum):
    """Ping/Status (MS-ASCMD 2.2.3.177.10)."""

    HEARTBEAT_EXPIRED = 1
    CHANGES_FOUND = 2
    MISSING_PARAMETERS = 3
    SYNTAX_ERROR = 4
    INVALID_HEARTBEAT = 5
    TOO_MANY_FOLDERS = 6
    FOLDER_SYNC_REQUIRED = 7
    SERVER_ERROR = 8


class FolderSyncStatus(IntEnum):
    """FolderSync/Status (MS-ASCMD 2.2.3.177.4)."""

    SUCCESS = 1
    SERVER_ERROR = 6
    SYNC_KEY_ERROR = 9
    INCORRECT_REQUEST = 10
    UNKNOWN_ERROR = 11
    CODE_UNKNOWN = 12


class SyncStatus(IntEnum):
    """Sync/Status (MS-ASCMD 2.2.3.177.17)."""

    SUCCESS = 1
    INVALID_SYNC_KEY = 3
    FOLDER_HIERARCHY_CHANGED = 12


class ItemOperationsStatus(IntEnum):
    """ItemOperations/Status and Fetch/Status (MS-ASCMD 2.2.3.177.7)."""

    SUCCESS = 1
