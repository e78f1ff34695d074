"""MS-ASWBXML code pages 0..25 (protocol 16.1): the single source of truth.

Every tag of every Exchange ActiveSync WBXML code page, with its one-byte
token (0x05..0x3F; bit 0x40 = has content is added by the codec, never here).
Names follow Microsoft's documents: the MS-ASWBXML 2.1.2.1.x tables, and
where a table name was in doubt, the element name used by the defining
document (MS-ASCMD, MS-ASEMAIL, MS-ASCAL, MS-ASCNTC, MS-ASAIRS, MS-ASPROV,
MS-ASRM, MS-ASCON).  Pure data; no imports.

Sources used to build and cross-check the tables:
  * MS-ASWBXML 2.1.2.1.11 (page 10), 2.1.2.1.13 (page 12), 2.1.2.1.26
    (page 25) read directly from learn.microsoft.com.
  * MS-ASCMD / MS-ASEMAIL / MS-ASAIRS / MS-ASPROV / MS-ASCNTC / MS-ASCAL /
    MS-ASDTYPE / MS-ASCON element pages and XSDs (learn.microsoft.com) for
    element names and data types (DtStamp, SMTPAddress, Timezone,
    AssistantPhoneNumber, Forwardee/Name/Email, ProposedStartTime,
    ProposedEndTime, SendResponse, AccountOnlyRemoteWipe, Mime, Content...).
  * libwbxml src/wbxml_tables.c ("[MS-ASWBXML] 8.0" table with per-token
    notes on spec revisions r1.0 / r8.0).
  * grommunio-sync / Z-Push lib/wbxml/wbxmldefs.php (own internal names; used
    for token values and legacy tokens only).
  * jobisoft/EAS-4-TbSync content/includes/wbxmltools.js (spec names, to 16.0).
  * mozilla-b2g/jsas codepages.js (spec names, pages 0, 1, 7, 17).
  * Several independent table transcriptions of MS-ASWBXML (Rust, Go, C#)
    for the 16.0/16.1 additions.

Entries marked "# unverified:" are NOT in the current MS-ASWBXML table (as far
as could be determined) but are defined by older spec revisions / reliable
implementations (legacy EAS 2.5 tokens, AirNotify).  They are kept so that a
decoder does not choke on old clients; an encoder may simply never emit them.
Names are unique within each page, so keeping them is harmless.
"""

# Each page: (number, name, namespace, aliases, section, tags)
# tags: dict token(int) -> tag name (str), token in 0x05..0x3F
PAGES = (
    (0, "AirSync", "AirSync:", (), "MS-ASWBXML 2.1.2.1.1", {
        0x05: "Sync",
        0x06: "Responses",
        0x07: "Add",
        0x08: "Change",
        0x09: "Delete",
        0x0A: "Fetch",
        0x0B: "SyncKey",
        0x0C: "ClientId",
        0x0D: "ServerId",
        0x0E: "Status",
        0x0F: "Collection",
        0x10: "Class",
        0x11: "Version",  # unverified: legacy (r1.0) token per libwbxml/Z-Push/jsas-gaia; absent from current table
        0x12: "CollectionId",
        0x13: "GetChanges",
        0x14: "MoreAvailable",
        0x15: "WindowSize",
        0x16: "Commands",
        0x17: "Options",
        0x18: "FilterType",
        0x19: "Truncation",  # 2.5 only
        0x1A: "RTFTruncation",  # unverified: legacy (r1.0) per libwbxml; Z-Push/jsas spell it "RtfTruncation"
        0x1B: "Conflict",
        0x1C: "Collections",
        0x1D: "ApplicationData",
        0x1E: "DeletesAsMoves",
        0x1F: "NotifyGUID",  # unverified: legacy (r1.0) token per libwbxml/Z-Push; absent from current table
        0x20: "Supported",
        0x21: "SoftDelete",
        0x22: "MIMESupport",
        0x23: "MIMETruncation",
        0x24: "Wait",
        0x25: "Limit",
        0x26: "Partial",
        0x27: "ConversationMode",
        0x28: "MaxItems",
        0x29: "HeartbeatInterval",
    }),
    (1, "Contacts", "Contacts:", ("POOMCONTACTS:",), "MS-ASWBXML 2.1.2.1.2", {
        0x05: "Anniversary",
        0x06: "AssistantName",
        0x07: "AssistantPhoneNumber",  # libwbxml: AssistantTelephoneNumber, Z-Push: AssistnamePhoneNumber; MS-ASCNTC XSD: AssistantPhoneNumber
        0x08: "Birthday",
        0x09: "Body",  # 2.5 only
        0x0A: "BodySize",  # 2.5 only
        0x0B: "BodyTruncated",  # 2.5 only
        0x0C: "Business2PhoneNumber",
        0x0D: "BusinessAddressCity",  # libwbxml/Z-Push: BusinessCity (not the spec name)
        0x0E: "BusinessAddressCountry",
        0x0F: "BusinessAddressPostalCode",
        0x10: "BusinessAddressState",
        0x11: "BusinessAddressStreet",
        0x12: "BusinessFaxNumber",
        0x13: "BusinessPhoneNumber",
        0x14: "CarPhoneNumber",
        0x15: "Categories",
        0x16: "Category",
        0x17: "Children",
        0x18: "Child",
        0x19: "CompanyName",
        0x1A: "Department",
        0x1B: "Email1Address",
        0x1C: "Email2Address",
        0x1D: "Email3Address",
        0x1E: "FileAs",
        0x1F: "FirstName",
        0x20: "Home2PhoneNumber",
        0x21: "HomeAddressCity",  # libwbxml/Z-Push: HomeCity (not the spec name)
        0x22: "HomeAddressCountry",
        0x23: "HomeAddressPostalCode",
        0x24: "HomeAddressState",
        0x25: "HomeAddressStreet",
        0x26: "HomeFaxNumber",
        0x27: "HomePhoneNumber",
        0x28: "JobTitle",
        0x29: "LastName",
        0x2A: "MiddleName",
        0x2B: "MobilePhoneNumber",
        0x2C: "OfficeLocation",
        0x2D: "OtherAddressCity",  # libwbxml/Z-Push: OtherCity (not the spec name)
        0x2E: "OtherAddressCountry",
        0x2F: "OtherAddressPostalCode",
        0x30: "OtherAddressState",
        0x31: "OtherAddressStreet",
        0x32: "PagerNumber",
        0x33: "RadioPhoneNumber",
        0x34: "Spouse",
        0x35: "Suffix",
        0x36: "Title",
        0x37: "WebPage",
        0x38: "YomiCompanyName",
        0x39: "YomiFirstName",
        0x3A: "YomiLastName",
        0x3B: "CompressedRTF",  # unverified: legacy (r1.0, EAS 2.5) per libwbxml/TbSync; Z-Push calls it "Rtf"
        0x3C: "Picture",
        0x3D: "Alias",
        0x3E: "WeightedRank",
    }),
    (2, "Email", "Email:", ("POOMMAIL:",), "MS-ASWBXML 2.1.2.1.3", {
        0x05: "Attachment",  # 2.5 only (AirSyncBase:Attachment since 12.0)
        0x06: "Attachments",
        0x07: "AttName",
        0x08: "AttSize",
        0x09: "Att0Id",  # spec spelling has a digit zero; case differs: jsas/TbSync/C# "Att0Id", two newer transcriptions "Att0id", libwbxml "AttOId", Z-Push "AttOid"
        0x0A: "AttMethod",
        0x0B: "AttRemoved",  # unverified: legacy (r1.0) per libwbxml/Z-Push/TbSync; absent from current table
        0x0C: "Body",  # 2.5 only
        0x0D: "BodySize",
        0x0E: "BodyTruncated",
        0x0F: "DateReceived",
        0x10: "DisplayName",
        0x11: "DisplayTo",
        0x12: "Importance",
        0x13: "MessageClass",
        0x14: "Subject",
        0x15: "Read",
        0x16: "To",
        0x17: "Cc",
        0x18: "From",
        0x19: "ReplyTo",  # libwbxml/Z-Push: "Reply-To"; MS-ASEMAIL element is ReplyTo
        0x1A: "AllDayEvent",
        0x1B: "Categories",
        0x1C: "Category",
        0x1D: "DtStamp",  # jsas/TbSync/libwbxml: "DTStamp"; MS-ASEMAIL 2.2.2.30 names it DtStamp
        0x1E: "EndTime",
        0x1F: "InstanceType",
        0x20: "BusyStatus",
        0x21: "Location",
        0x22: "MeetingRequest",
        0x23: "Organizer",
        0x24: "RecurrenceId",
        0x25: "Reminder",
        0x26: "ResponseRequested",
        0x27: "Recurrences",
        0x28: "Recurrence",
        0x29: "Type",  # jsas/TbSync/libwbxml prefix 0x29..0x30 with "Recurrence_"; spec uses the plain names
        0x2A: "Until",
        0x2B: "Occurrences",
        0x2C: "Interval",
        0x2D: "DayOfWeek",
        0x2E: "DayOfMonth",
        0x2F: "WeekOfMonth",
        0x30: "MonthOfYear",
        0x31: "StartTime",
        0x32: "Sensitivity",
        0x33: "TimeZone",
        0x34: "GlobalObjId",
        0x35: "ThreadTopic",
        0x36: "MIMEData",  # 2.5 only
        0x37: "MIMETruncated",
        0x38: "MIMESize",
        0x39: "InternetCPID",
        0x3A: "Flag",
        0x3B: "Status",  # libwbxml/Z-Push: "FlagStatus"; spec/MS-ASEMAIL: Status (child of Flag)
        0x3C: "ContentClass",
        0x3D: "FlagType",
        0x3E: "CompleteTime",
        0x3F: "DisallowNewTimeProposal",
    }),
    # Page 3 is "no longer in use; tokens 05 to 17 have been defined" (MS-ASWBXML).
    # Names below are from the r1.0 table as carried by libwbxml (Z-Push agrees on
    # tokens, with its own names: Lifetime, ServerEntryId, Replies).
    (3, "AirNotify", "AirNotify:", (), "MS-ASWBXML 2.1.2.1.4", {
        0x05: "Notify",  # unverified: AirNotify names from libwbxml (r1.0)
        0x06: "Notification",  # unverified: AirNotify (libwbxml)
        0x07: "Version",  # unverified: AirNotify (libwbxml)
        0x08: "LifeTime",  # unverified: AirNotify (libwbxml; Z-Push "Lifetime")
        0x09: "DeviceInfo",  # unverified: AirNotify (libwbxml)
        0x0A: "Enable",  # unverified: AirNotify (libwbxml)
        0x0B: "Folder",  # unverified: AirNotify (libwbxml)
        0x0C: "ServerId",  # unverified: AirNotify (libwbxml; Z-Push "ServerEntryId")
        0x0D: "DeviceAddress",  # unverified: AirNotify (libwbxml)
        0x0E: "ValidCarrierProfiles",  # unverified: AirNotify (libwbxml)
        0x0F: "CarrierProfile",  # unverified: AirNotify (libwbxml)
        0x10: "Status",  # unverified: AirNotify (libwbxml)
        0x11: "Responses",  # unverified: AirNotify (libwbxml; Z-Push "Replies")
        0x12: "Devices",  # unverified: AirNotify (libwbxml)
        0x13: "Device",  # unverified: AirNotify (libwbxml)
        0x14: "Id",  # unverified: AirNotify (libwbxml)
        0x15: "Expiry",  # unverified: AirNotify (libwbxml)
        0x16: "NotifyGUID",  # unverified: AirNotify (libwbxml)
        0x17: "DeviceFriendlyName",  # unverified: AirNotify (libwbxml only; Z-Push stops at 0x16)
    }),
    (4, "Calendar", "Calendar:", ("POOMCAL:",), "MS-ASWBXML 2.1.2.1.5", {
        0x05: "Timezone",  # TbSync/libwbxml/C#: "TimeZone"; MS-ASCAL XSD + Z-Push: Timezone
        0x06: "AllDayEvent",
        0x07: "Attendees",
        0x08: "Attendee",
        0x09: "Email",  # libwbxml: Attendee_Email
        0x0A: "Name",  # libwbxml: Attendee_Name
        0x0B: "Body",  # 2.5 only
        0x0C: "BodyTruncated",  # 2.5 only
        0x0D: "BusyStatus",
        0x0E: "Categories",
        0x0F: "Category",
        0x10: "CompressedRTF",  # unverified: legacy (r1.0, EAS 2.5) per libwbxml ("Compressed_RTF")/TbSync; Z-Push "Rtf"
        0x11: "DtStamp",  # libwbxml: "DTStamp"
        0x12: "EndTime",
        0x13: "Exception",
        0x14: "Exceptions",
        0x15: "Deleted",  # libwbxml: Exception_Deleted
        0x16: "ExceptionStartTime",
        0x17: "Location",
        0x18: "MeetingStatus",
        0x19: "OrganizerEmail",
        0x1A: "OrganizerName",
        0x1B: "Recurrence",
        0x1C: "Type",
        0x1D: "Until",
        0x1E: "Occurrences",
        0x1F: "Interval",
        0x20: "DayOfWeek",
        0x21: "DayOfMonth",
        0x22: "WeekOfMonth",
        0x23: "MonthOfYear",
        0x24: "Reminder",
        0x25: "Sensitivity",
        0x26: "Subject",
        0x27: "StartTime",
        0x28: "UID",
        0x29: "AttendeeStatus",  # libwbxml/Z-Push: Attendee_Status
        0x2A: "AttendeeType",  # libwbxml/Z-Push: Attendee_Type
        0x2B: "Attachment",  # unverified: 12.1-era token, "not defined / deprecated" per Z-Push; TbSync has it; absent from current table
        0x2C: "Attachments",  # unverified: as 0x2B
        0x2D: "AttName",  # unverified: as 0x2B
        0x2E: "AttSize",  # unverified: as 0x2B
        0x2F: "AttOid",  # unverified: as 0x2B
        0x30: "AttMethod",  # unverified: as 0x2B
        0x31: "AttRemoved",  # unverified: as 0x2B
        0x32: "DisplayName",  # unverified: as 0x2B
        0x33: "DisallowNewTimeProposal",
        0x34: "ResponseRequested",
        0x35: "AppointmentReplyTime",
        0x36: "ResponseType",
        0x37: "CalendarType",
        0x38: "IsLeapMonth",
        0x39: "FirstDayOfWeek",
        0x3A: "OnlineMeetingConfLink",
        0x3B: "OnlineMeetingExternalLink",
        0x3C: "ClientUid",  # 16.0
    }),
    (5, "Move", "Move:", (), "MS-ASWBXML 2.1.2.1.6", {
        0x05: "MoveItems",  # Z-Push: "Moves"
        0x06: "Move",
        0x07: "SrcMsgId",
        0x08: "SrcFldId",
        0x09: "DstFldId",
        0x0A: "Response",
        0x0B: "Status",
        0x0C: "DstMsgId",
    }),
    (6, "GetItemEstimate", "GetItemEstimate:", (), "MS-ASWBXML 2.1.2.1.7", {
        0x05: "GetItemEstimate",
        0x06: "Version",  # unverified: 12.1-only per libwbxml (r8.0); dropped from newer transcriptions of the table
        0x07: "Collections",
        0x08: "Collection",
        0x09: "Class",
        0x0A: "CollectionId",
        0x0B: "DateTime",  # unverified: 12.1-only per libwbxml (r8.0); dropped from newer transcriptions of the table
        0x0C: "Estimate",
        0x0D: "Response",
        0x0E: "Status",
    }),
    (7, "FolderHierarchy", "FolderHierarchy:", (), "MS-ASWBXML 2.1.2.1.8", {
        0x05: "Folders",  # libwbxml: in r1.0 not r8.0; present in current-table transcriptions
        0x06: "Folder",  # as 0x05
        0x07: "DisplayName",
        0x08: "ServerId",
        0x09: "ParentId",
        0x0A: "Type",
        0x0B: "Response",  # unverified: legacy (r1.0) per libwbxml/Z-Push; absent from current table
        0x0C: "Status",
        0x0D: "ContentClass",  # unverified: legacy (r1.0) per libwbxml/Z-Push; absent from current table
        0x0E: "Changes",
        0x0F: "Add",
        0x10: "Delete",  # Z-Push: "Remove"
        0x11: "Update",
        0x12: "SyncKey",
        0x13: "FolderCreate",
        0x14: "FolderDelete",
        0x15: "FolderUpdate",
        0x16: "FolderSync",
        0x17: "Count",
        0x18: "Version",  # unverified: legacy (r1.0) per libwbxml/Z-Push; absent from current table
    }),
    (8, "MeetingResponse", "MeetingResponse:", (), "MS-ASWBXML 2.1.2.1.9", {
        0x05: "CalendarId",
        0x06: "CollectionId",
        0x07: "MeetingResponse",
        0x08: "RequestId",
        0x09: "Request",
        0x0A: "Result",
        0x0B: "Status",
        0x0C: "UserResponse",
        0x0D: "Version",  # unverified: legacy (r1.0) per libwbxml/Z-Push; absent from current table
        0x0E: "InstanceId",
        0x10: "ProposedStartTime",  # 16.0; element names per MS-ASCMD 2.2.3.140/141/163, tokens per table transcriptions
        0x11: "ProposedEndTime",  # 16.0
        0x12: "SendResponse",  # 16.0
    }),
    (9, "Tasks", "Tasks:", ("POOMTASKS:",), "MS-ASWBXML 2.1.2.1.10", {
        0x05: "Body",  # unverified: 2.5-era token per libwbxml/Z-Push/TbSync; omitted by current-table transcriptions
        0x06: "BodySize",  # unverified: as 0x05
        0x07: "BodyTruncated",  # unverified: as 0x05
        0x08: "Categories",
        0x09: "Category",
        0x0A: "Complete",
        0x0B: "DateCompleted",
        0x0C: "DueDate",
        0x0D: "UtcDueDate",  # libwbxml: UTCDueDate
        0x0E: "Importance",
        0x0F: "Recurrence",
        0x10: "Type",  # libwbxml: Recurrence_Type (and Recurrence_* for 0x11..0x1A)
        0x11: "Start",
        0x12: "Until",
        0x13: "Occurrences",
        0x14: "Interval",
        0x15: "DayOfMonth",
        0x16: "DayOfWeek",
        0x17: "WeekOfMonth",
        0x18: "MonthOfYear",
        0x19: "Regenerate",
        0x1A: "DeadOccur",
        0x1B: "ReminderSet",
        0x1C: "ReminderTime",
        0x1D: "Sensitivity",
        0x1E: "StartDate",
        0x1F: "UtcStartDate",  # libwbxml: UTCStartDate
        0x20: "Subject",
        0x21: "CompressedRTF",  # unverified: legacy (r1.0, EAS 2.5) per libwbxml; Z-Push "Rtf"
        0x22: "OrdinalDate",
        0x23: "SubOrdinalDate",
        0x24: "CalendarType",
        0x25: "IsLeapMonth",
        0x26: "FirstDayOfWeek",
    }),
    (10, "ResolveRecipients", "ResolveRecipients:", (), "MS-ASWBXML 2.1.2.1.11", {
        0x05: "ResolveRecipients",
        0x06: "Response",
        0x07: "Status",
        0x08: "Type",
        0x09: "Recipient",
        0x0A: "DisplayName",
        0x0B: "EmailAddress",
        0x0C: "Certificates",
        0x0D: "Certificate",
        0x0E: "MiniCertificate",
        0x0F: "Options",
        0x10: "To",
        0x11: "CertificateRetrieval",
        0x12: "RecipientCount",
        0x13: "MaxCertificates",
        0x14: "MaxAmbiguousRecipients",
        0x15: "CertificateCount",
        0x16: "Availability",
        0x17: "StartTime",
        0x18: "EndTime",
        0x19: "MergedFreeBusy",
        0x1A: "Picture",
        0x1B: "MaxSize",
        0x1C: "Data",
        0x1D: "MaxPictures",
    }),
    (11, "ValidateCert", "ValidateCert:", (), "MS-ASWBXML 2.1.2.1.12", {
        0x05: "ValidateCert",
        0x06: "Certificates",
        0x07: "Certificate",
        0x08: "CertificateChain",
        0x09: "CheckCRL",
        0x0A: "Status",
    }),
    (12, "Contacts2", "Contacts2:", ("POOMCONTACTS2:",), "MS-ASWBXML 2.1.2.1.13", {
        0x05: "CustomerId",
        0x06: "GovernmentId",
        0x07: "IMAddress",
        0x08: "IMAddress2",
        0x09: "IMAddress3",
        0x0A: "ManagerName",
        0x0B: "CompanyMainPhone",
        0x0C: "AccountName",
        0x0D: "NickName",
        0x0E: "MMS",
    }),
    (13, "Ping", "Ping:", (), "MS-ASWBXML 2.1.2.1.14", {
        0x05: "Ping",
        0x06: "AutdState",  # unverified: "not used by protocol" (libwbxml, TbSync, Z-Push); omitted by current-table transcriptions
        0x07: "Status",
        0x08: "HeartbeatInterval",  # Z-Push: "LifeTime"
        0x09: "Folders",
        0x0A: "Folder",
        0x0B: "Id",  # Z-Push: "ServerEntryId"
        0x0C: "Class",  # Z-Push: "FolderType"
        0x0D: "MaxFolders",
        0x0E: "Version",  # unverified: only Z-Push/grommunio-sync defines it ("not defined / deprecated")
    }),
    (14, "Provision", "Provision:", (), "MS-ASWBXML 2.1.2.1.15", {
        0x05: "Provision",
        0x06: "Policies",
        0x07: "Policy",
        0x08: "PolicyType",
        0x09: "PolicyKey",
        0x0A: "Data",
        0x0B: "Status",
        0x0C: "RemoteWipe",
        0x0D: "EASProvisionDoc",
        0x0E: "DevicePasswordEnabled",
        0x0F: "AlphanumericDevicePasswordRequired",
        # 0x10 carries two names in the spec table: DeviceEncryptionEnabled (12.0)
        # and RequireStorageCardEncryption (12.1+).  The 16.1 name is kept here.
        0x10: "RequireStorageCardEncryption",
        0x11: "PasswordRecoveryEnabled",
        0x12: "DocumentBrowseEnabled",  # unverified: legacy (r1.0) per libwbxml/Z-Push; absent from current table
        0x13: "AttachmentsEnabled",
        0x14: "MinDevicePasswordLength",
        0x15: "MaxInactivityTimeDeviceLock",
        0x16: "MaxDevicePasswordFailedAttempts",
        0x17: "MaxAttachmentSize",
        0x18: "AllowSimpleDevicePassword",
        0x19: "DevicePasswordExpiration",
        0x1A: "DevicePasswordHistory",
        0x1B: "AllowStorageCard",
        0x1C: "AllowCamera",
        0x1D: "RequireDeviceEncryption",
        0x1E: "AllowUnsignedApplications",
        0x1F: "AllowUnsignedInstallationPackages",
        0x20: "MinDevicePasswordComplexCharacters",
        0x21: "AllowWiFi",
        0x22: "AllowTextMessaging",
        0x23: "AllowPOPIMAPEmail",
        0x24: "AllowBluetooth",
        0x25: "AllowIrDA",
        0x26: "RequireManualSyncWhenRoaming",
        0x27: "AllowDesktopSync",
        0x28: "MaxCalendarAgeFilter",
        0x29: "AllowHTMLEmail",
        0x2A: "MaxEmailAgeFilter",
        0x2B: "MaxEmailBodyTruncationSize",
        0x2C: "MaxEmailHTMLBodyTruncationSize",
        0x2D: "RequireSignedSMIMEMessages",
        0x2E: "RequireEncryptedSMIMEMessages",
        0x2F: "RequireSignedSMIMEAlgorithm",
        0x30: "RequireEncryptionSMIMEAlgorithm",
        0x31: "AllowSMIMEEncryptionAlgorithmNegotiation",
        0x32: "AllowSMIMESoftCerts",
        0x33: "AllowBrowser",
        0x34: "AllowConsumerEmail",
        0x35: "AllowRemoteDesktop",
        0x36: "AllowInternetSharing",
        0x37: "UnapprovedInROMApplicationList",
        0x38: "ApplicationName",
        0x39: "ApprovedApplicationList",
        0x3A: "Hash",
        0x3B: "AccountOnlyRemoteWipe",  # 16.1 (MS-ASPROV 2.2.2.1); token per several table transcriptions
    }),
    (15, "Search", "Search:", (), "MS-ASWBXML 2.1.2.1.16", {
        # 0x06 and 0x16 are unused (libwbxml: "not supported"); TbSync names 0x06 "Stores" - not included.
        0x05: "Search",
        0x07: "Store",
        0x08: "Name",
        0x09: "Query",
        0x0A: "Options",
        0x0B: "Range",
        0x0C: "Status",
        0x0D: "Response",
        0x0E: "Result",
        0x0F: "Properties",
        0x10: "Total",
        0x11: "EqualTo",
        0x12: "Value",
        0x13: "And",
        0x14: "Or",
        0x15: "FreeText",
        0x17: "DeepTraversal",
        0x18: "LongId",
        0x19: "RebuildResults",
        0x1A: "LessThan",
        0x1B: "GreaterThan",
        0x1C: "Schema",  # one recent transcription omits 0x1C/0x1D; libwbxml/Z-Push/TbSync/jsas-era tables have them
        0x1D: "Supported",
        0x1E: "UserName",
        0x1F: "Password",
        0x20: "ConversationId",
        0x21: "Picture",
        0x22: "MaxSize",
        0x23: "MaxPictures",
    }),
    (16, "GAL", "GAL:", ("Gal:",), "MS-ASWBXML 2.1.2.1.17", {
        0x05: "DisplayName",
        0x06: "Phone",
        0x07: "Office",
        0x08: "Title",
        0x09: "Company",
        0x0A: "Alias",
        0x0B: "FirstName",
        0x0C: "LastName",
        0x0D: "HomePhone",
        0x0E: "MobilePhone",
        0x0F: "EmailAddress",
        0x10: "Picture",
        0x11: "Status",
        0x12: "Data",
    }),
    (17, "AirSyncBase", "AirSyncBase:", (), "MS-ASWBXML 2.1.2.1.18", {
        # 0x09 is unused (a gaia build of jsas calls it "Reserved") - not included.
        0x05: "BodyPreference",
        0x06: "Type",
        0x07: "TruncationSize",
        0x08: "AllOrNone",
        0x0A: "Body",
        0x0B: "Data",
        0x0C: "EstimatedDataSize",
        0x0D: "Truncated",
        0x0E: "Attachments",
        0x0F: "Attachment",
        0x10: "DisplayName",
        0x11: "FileReference",
        0x12: "Method",
        0x13: "ContentId",
        0x14: "ContentLocation",
        0x15: "IsInline",
        0x16: "NativeBodyType",
        0x17: "ContentType",
        0x18: "Preview",
        0x19: "BodyPartPreference",
        0x1A: "BodyPart",
        0x1B: "Status",
        0x1C: "Add",  # 16.0 (0x1C..0x2D); names per MS-ASAIRS
        0x1D: "Delete",
        0x1E: "ClientId",
        0x1F: "Content",
        0x20: "Location",
        0x21: "Annotation",  # one PHP table misspells it "Annontation"
        0x22: "Street",
        0x23: "City",
        0x24: "State",
        0x25: "Country",
        0x26: "PostalCode",
        0x27: "Latitude",
        0x28: "Longitude",
        0x29: "Accuracy",
        0x2A: "Altitude",
        0x2B: "AltitudeAccuracy",
        0x2C: "LocationUri",
        0x2D: "InstanceId",
    }),
    (18, "Settings", "Settings:", (), "MS-ASWBXML 2.1.2.1.19", {
        0x05: "Settings",
        0x06: "Status",
        0x07: "Get",
        0x08: "Set",
        0x09: "Oof",
        0x0A: "OofState",
        0x0B: "StartTime",
        0x0C: "EndTime",
        0x0D: "OofMessage",
        0x0E: "AppliesToInternal",
        0x0F: "AppliesToExternalKnown",
        0x10: "AppliesToExternalUnknown",
        0x11: "Enabled",
        0x12: "ReplyMessage",
        0x13: "BodyType",
        0x14: "DevicePassword",
        0x15: "Password",
        0x16: "DeviceInformation",  # libwbxml typo "DeviceInformaton"
        0x17: "Model",
        0x18: "IMEI",
        0x19: "FriendlyName",
        0x1A: "OS",
        0x1B: "OSLanguage",
        0x1C: "PhoneNumber",
        0x1D: "UserInformation",
        0x1E: "EmailAddresses",
        0x1F: "SMTPAddress",  # libwbxml/Z-Push: "SmtpAddress"; MS-ASCMD 2.2.3.171: SMTPAddress
        0x20: "UserAgent",
        0x21: "EnableOutboundSMS",
        0x22: "MobileOperator",
        0x23: "PrimarySmtpAddress",
        0x24: "Accounts",
        0x25: "Account",
        0x26: "AccountId",
        0x27: "AccountName",
        0x28: "UserDisplayName",
        0x29: "SendDisabled",
        # 0x2A is unused.
        0x2B: "RightsManagementInformation",  # libwbxml typo "ihsManagementInformation"
    }),
    (19, "DocumentLibrary", "DocumentLibrary:", (), "MS-ASWBXML 2.1.2.1.20", {
        0x05: "LinkId",
        0x06: "DisplayName",
        0x07: "IsFolder",
        0x08: "CreationDate",
        0x09: "LastModifiedDate",
        0x0A: "IsHidden",
        0x0B: "ContentLength",
        0x0C: "ContentType",
    }),
    (20, "ItemOperations", "ItemOperations:", (), "MS-ASWBXML 2.1.2.1.21", {
        0x05: "ItemOperations",
        0x06: "Fetch",
        0x07: "Store",
        0x08: "Options",
        0x09: "Range",
        0x0A: "Total",
        0x0B: "Properties",
        0x0C: "Data",
        0x0D: "Status",
        0x0E: "Response",
        0x0F: "Version",
        0x10: "Schema",
        0x11: "Part",
        0x12: "EmptyFolderContents",
        0x13: "DeleteSubFolders",
        0x14: "UserName",
        0x15: "Password",
        0x16: "Move",
        0x17: "DstFldId",
        0x18: "ConversationId",
        0x19: "MoveAlways",
    }),
    (21, "ComposeMail", "ComposeMail:", (), "MS-ASWBXML 2.1.2.1.22", {
        0x05: "SendMail",
        0x06: "SmartForward",
        0x07: "SmartReply",
        0x08: "SaveInSentItems",
        0x09: "ReplaceMime",
        0x0A: "Type",  # unverified: Z-Push ("not used") and one C# table only; libwbxml/TbSync leave 0x0A unused
        0x0B: "Source",
        0x0C: "FolderId",
        0x0D: "ItemId",
        0x0E: "LongId",
        0x0F: "InstanceId",
        0x10: "Mime",  # libwbxml/Z-Push: "MIME"; MS-ASCMD 2.2.3.109 / ComposeMail.xsd: Mime
        0x11: "ClientId",
        0x12: "Status",
        0x13: "AccountId",
        # 0x14 is unused.
        0x15: "Forwardees",  # 16.0 (0x15..0x18)
        0x16: "Forwardee",
        0x17: "Name",  # TbSync: "ForwardeeName"; MS-ASCMD 2.2.3.120.3: Name
        0x18: "Email",  # TbSync: "ForwardeeEmail"; MS-ASCMD 2.2.3.53: Email
    }),
    (22, "Email2", "Email2:", ("POOMMAIL2:",), "MS-ASWBXML 2.1.2.1.23", {
        0x05: "UmCallerID",  # Z-Push: "UmCallerId"
        0x06: "UmUserNotes",
        0x07: "UmAttDuration",
        0x08: "UmAttOrder",
        0x09: "ConversationId",
        0x0A: "ConversationIndex",
        0x0B: "LastVerbExecuted",
        0x0C: "LastVerbExecutionTime",
        0x0D: "ReceivedAsBcc",
        0x0E: "Sender",
        0x0F: "CalendarType",
        0x10: "IsLeapMonth",
        0x11: "AccountId",
        0x12: "FirstDayOfWeek",
        0x13: "MeetingMessageType",
        # 0x14 is unused.
        0x15: "IsDraft",  # 16.0 (0x15..0x17)
        0x16: "Bcc",
        0x17: "Send",
    }),
    (23, "Notes", "Notes:", (), "MS-ASWBXML 2.1.2.1.24", {
        0x05: "Subject",
        0x06: "MessageClass",
        0x07: "LastModifiedDate",
        0x08: "Categories",
        0x09: "Category",
    }),
    (24, "RightsManagement", "RightsManagement:", (), "MS-ASWBXML 2.1.2.1.25", {
        0x05: "RightsManagementSupport",
        0x06: "RightsManagementTemplates",
        0x07: "RightsManagementTemplate",
        0x08: "RightsManagementLicense",
        0x09: "EditAllowed",
        0x0A: "ReplyAllowed",
        0x0B: "ReplyAllAllowed",
        0x0C: "ForwardAllowed",
        0x0D: "ModifyRecipientsAllowed",
        0x0E: "ExtractAllowed",
        0x0F: "PrintAllowed",
        0x10: "ExportAllowed",
        0x11: "ProgrammaticAccessAllowed",
        0x12: "Owner",  # libwbxml: "RMOwner"
        0x13: "ContentExpiryDate",
        0x14: "TemplateID",
        0x15: "TemplateName",
        0x16: "TemplateDescription",
        0x17: "ContentOwner",
        0x18: "RemoveRightsManagementProtection",  # libwbxml/TbSync: "RemoveRightsManagementDistribution"; MS-ASRM/MS-ASCMD: ...Protection
    }),
    (25, "Find", "Find:", (), "MS-ASWBXML 2.1.2.1.26", {
        # Read directly from MS-ASWBXML 2.1.2.1.26: 0x0F, 0x10 and 0x1A..0x1F are not assigned.
        0x05: "Find",
        0x06: "SearchId",
        0x07: "ExecuteSearch",
        0x08: "MailBoxSearchCriterion",
        0x09: "Query",
        0x0A: "Status",
        0x0B: "FreeText",
        0x0C: "Options",
        0x0D: "Range",
        0x0E: "DeepTraversal",
        0x11: "Response",
        0x12: "Result",
        0x13: "Properties",
        0x14: "Preview",
        0x15: "HasAttachments",
        0x16: "Total",
        0x17: "DisplayCc",
        0x18: "DisplayBcc",
        0x19: "GalSearchCriterion",
        0x20: "MaxPictures",
        0x21: "MaxSize",
        0x22: "Picture",
    }),
)

# Tags whose content is opaque binary (WBXML OPAQUE) and must stay bytes, as (page name, tag name), with the source for each:
# MS-ASDTYPE 2.7.1: "Elements with a byte array structure MUST be encoded and
# transmitted as [WBXML1.2] opaque data."  Only elements a Microsoft document
# types as byte array are listed.  Deliberately NOT listed (typed string):
#   AirSyncBase:Data - MS-ASAIRS types it string (for Type=4 it carries the MIME
#     text).  Exchange is known to send it as OPAQUE in practice, so a decoder
#     must accept OPAQUE content on any tag; but the spec type is string.
#   ItemOperations:Data - MS-ASCMD 2.2.3.39.2: string, base64 of the binary.
#   Contacts:Picture, GAL:Data, ResolveRecipients:Certificate/MiniCertificate/Data,
#   ValidateCert:Certificate/CertificateChain, Email:GlobalObjId - base64 strings.
#   Email:MIMEData (2.5 only) - not typed byte array in the current documents.
OPAQUE_TAGS = frozenset({
    ("Email2", "ConversationId"),  # MS-ASEMAIL 2.2.2.21 / MS-ASCON 2.2.2.3.3: byte array; libwbxml flags BINARY
    ("Email2", "ConversationIndex"),  # MS-ASEMAIL 2.2.2.22 / MS-ASCON: byte array; libwbxml flags BINARY
    ("ItemOperations", "ConversationId"),  # MS-ASCON 2.2.2.3.1: byte array; libwbxml flags BINARY
    ("Search", "ConversationId"),  # MS-ASCON 2.2.2.3 (Search): byte array; libwbxml flags BINARY
    ("ComposeMail", "Mime"),  # MS-ASCMD 2.2.3.109: byte array, "transferred as an opaque BLOB"
    ("AirSyncBase", "Content"),  # MS-ASAIRS 2.2.2.15 (16.0): "string data type byte array" (MS-ASDTYPE 2.7.1)
})
