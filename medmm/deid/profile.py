"""The DICOM PS3.15 Annex E attribute table medmm applies, as data.

Each row is one attribute of Table E.1-1 (Basic Application Level Confidentiality Profile)
that can occur in the inputs medmm de-identifies: the modules of the CR, DX, CT and MR image
IODs (patient, study, series, equipment, acquisition, image, specimen, contrast, device,
request and procedure-step attributes, SOP common, digital signatures, overlays and curves),
plus the retired patient, visit and study attributes older files still carry.

Columns: tag (gggg,eeee; ``xx`` marks a repeating group), keyword, the basic-profile action
as the standard writes it, and the action of the two options medmm applies where the
standard gives one: Retain Longitudinal Temporal Information with Modified Dates (``C``:
dates shifted) and Retain Patient Characteristics (``K``: kept). Actions: D dummy value,
Z empty (or dummy), X remove, K keep, C clean (here: shift dates), U replace UIDs
consistently; ``U*`` keeps a reference sequence and replaces the UIDs inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

OPTIONS: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)
"""DICOM (DCM) codes of the profile and options applied, for DeidentificationMethodCodeSequence."""


@dataclass(frozen=True)
class ProfileEntry:
    """One row of the table: the standard's actions and the one medmm takes."""

    tag: str  # "gggg,eeee" as in the standard (xx in repeating groups)
    keyword: str
    basic: str  # basic-profile action as written in Table E.1-1 (e.g. "X/Z/D")
    option: str = ""  # action under the options applied ("C" or "K"), empty when none

    @property
    def action(self) -> str:
        """The action taken: the option's when it has one, else the basic one resolved."""
        return self.option or resolve(self.basic)


def resolve(basic: str) -> str:
    """One action for a combined one: U* first, then D, then Z, else X.

    The standard picks by the attribute's type in each IOD (X when optional, Z when type 2,
    D when type 1). A dummy (D) is valid whatever the type and an empty value (Z) for types
    2 and 3, so choosing them never makes an object invalid and never keeps a value.
    """
    parts = basic.split("/")
    for choice in ("U*", "D", "Z"):
        if choice in parts:
            return choice
    return parts[0]


# tag keyword basic [option]
_TABLE = """
0002,0003 MediaStorageSOPInstanceUID U
0008,0012 InstanceCreationDate X/D C
0008,0013 InstanceCreationTime X/Z/D C
0008,0014 InstanceCreatorUID U
0008,0015 InstanceCoercionDateTime X C
0008,0017 AcquisitionUID U
0008,0018 SOPInstanceUID U
0008,0020 StudyDate Z C
0008,0021 SeriesDate X/D C
0008,0022 AcquisitionDate X/Z C
0008,0023 ContentDate Z/D C
0008,0024 OverlayDate X C
0008,0025 CurveDate X C
0008,002A AcquisitionDateTime X/Z/D C
0008,0030 StudyTime Z C
0008,0031 SeriesTime X/D C
0008,0032 AcquisitionTime X/Z C
0008,0033 ContentTime Z/D C
0008,0034 OverlayTime X C
0008,0035 CurveTime X C
0008,0050 AccessionNumber Z
0008,0054 RetrieveAETitle X
0008,0055 StationAETitle X
0008,0080 InstitutionName X/Z/D
0008,0081 InstitutionAddress X
0008,0082 InstitutionCodeSequence X/Z/D
0008,0090 ReferringPhysicianName Z
0008,0092 ReferringPhysicianAddress X
0008,0094 ReferringPhysicianTelephoneNumbers X
0008,0096 ReferringPhysicianIdentificationSequence X
0008,009C ConsultingPhysicianName Z
0008,009D ConsultingPhysicianIdentificationSequence X
0008,0106 ContextGroupVersion D C
0008,0107 ContextGroupLocalVersion D C
0008,0201 TimezoneOffsetFromUTC X C
0008,1000 NetworkID X
0008,1010 StationName X/Z/D
0008,1030 StudyDescription X
0008,103E SeriesDescription X
0008,1040 InstitutionalDepartmentName X
0008,1041 InstitutionalDepartmentTypeCodeSequence X
0008,1048 PhysiciansOfRecord X
0008,1049 PhysiciansOfRecordIdentificationSequence X
0008,1050 PerformingPhysicianName X
0008,1052 PerformingPhysicianIdentificationSequence X
0008,1060 NameOfPhysiciansReadingStudy X
0008,1062 PhysiciansReadingStudyIdentificationSequence X
0008,1070 OperatorsName X/Z/D
0008,1072 OperatorIdentificationSequence X/D
0008,1080 AdmittingDiagnosesDescription X
0008,1084 AdmittingDiagnosesCodeSequence X
0008,1110 ReferencedStudySequence X/Z
0008,1111 ReferencedPerformedProcedureStepSequence X/Z/D
0008,1120 ReferencedPatientSequence X
0008,1140 ReferencedImageSequence X/Z/U*
0008,1155 ReferencedSOPInstanceUID U
0008,2111 DerivationDescription X
0008,2112 SourceImageSequence X/Z/U*
0008,3010 IrradiationEventUID U
0008,4000 IdentifyingComments X
0010,0010 PatientName Z
0010,0020 PatientID Z/D
0010,0021 IssuerOfPatientID X
0010,0030 PatientBirthDate Z
0010,0032 PatientBirthTime X
0010,0040 PatientSex Z K
0010,0050 PatientInsurancePlanCodeSequence X
0010,0101 PatientPrimaryLanguageCodeSequence X
0010,0102 PatientPrimaryLanguageModifierCodeSequence X
0010,1000 OtherPatientIDs X
0010,1001 OtherPatientNames X
0010,1002 OtherPatientIDsSequence X
0010,1005 PatientBirthName X
0010,1010 PatientAge X K
0010,1020 PatientSize X K
0010,1030 PatientWeight X K
0010,1040 PatientAddress X
0010,1050 InsurancePlanIdentification X
0010,1060 PatientMotherBirthName X
0010,1080 MilitaryRank X
0010,1081 BranchOfService X
0010,1090 MedicalRecordLocator X
0010,1100 ReferencedPatientPhotoSequence X
0010,2000 MedicalAlerts X
0010,2110 Allergies X
0010,2150 CountryOfResidence X
0010,2152 RegionOfResidence X
0010,2154 PatientTelephoneNumbers X
0010,2155 PatientTelecomInformation X
0010,2160 EthnicGroup X K
0010,2180 Occupation X
0010,21A0 SmokingStatus X K
0010,21B0 AdditionalPatientHistory X
0010,21C0 PregnancyStatus X K
0010,21D0 LastMenstrualDate X C
0010,21F0 PatientReligiousPreference X
0010,2203 PatientSexNeutered X/Z K
0010,2297 ResponsiblePerson X
0010,2299 ResponsibleOrganization X
0010,4000 PatientComments X
0012,0010 ClinicalTrialSponsorName D
0012,0020 ClinicalTrialProtocolID D
0012,0021 ClinicalTrialProtocolName Z
0012,0022 IssuerOfClinicalTrialProtocolID X
0012,0023 OtherClinicalTrialProtocolIDsSequence X
0012,0030 ClinicalTrialSiteID Z
0012,0031 ClinicalTrialSiteName Z
0012,0032 IssuerOfClinicalTrialSiteID X
0012,0040 ClinicalTrialSubjectID D
0012,0041 IssuerOfClinicalTrialSubjectID X
0012,0042 ClinicalTrialSubjectReadingID D
0012,0043 IssuerOfClinicalTrialSubjectReadingID X
0012,0050 ClinicalTrialTimePointID Z
0012,0051 ClinicalTrialTimePointDescription X
0012,0055 IssuerOfClinicalTrialTimePointID X
0012,0060 ClinicalTrialCoordinatingCenterName Z
0012,0071 ClinicalTrialSeriesID X
0012,0072 ClinicalTrialSeriesDescription X
0012,0073 IssuerOfClinicalTrialSeriesID X
0012,0081 ClinicalTrialProtocolEthicsCommitteeName D
0012,0082 ClinicalTrialProtocolEthicsCommitteeApprovalNumber X
0012,0086 EthicsCommitteeApprovalEffectivenessStartDate X C
0012,0087 EthicsCommitteeApprovalEffectivenessEndDate X C
0018,0010 ContrastBolusAgent Z/D
0018,0027 InterventionDrugStopTime X C
0018,0035 InterventionDrugStartTime X C
0018,1000 DeviceSerialNumber X/Z/D
0018,1002 DeviceUID U
0018,1004 PlateID X
0018,1005 GeneratorID X
0018,1007 CassetteID X
0018,1008 GantryID X
0018,1009 UniqueDeviceIdentifier X
0018,100A UDISequence X
0018,100B ManufacturerDeviceClassUID U
0018,1030 ProtocolName X/D
0018,1042 ContrastBolusStartTime X C
0018,1043 ContrastBolusStopTime X C
0018,1200 DateOfLastCalibration X C
0018,1201 TimeOfLastCalibration X C
0018,1202 DateTimeOfLastCalibration X C
0018,1203 CalibrationDateTime Z C
0018,1204 DateOfManufacture X C
0018,1205 DateOfInstallation X C
0018,1400 AcquisitionDeviceProcessingDescription X/D
0018,2042 TargetUID U
0018,4000 AcquisitionComments X
0018,700A DetectorID X/D
0018,700C DateOfLastDetectorCalibration X/D C
0018,700E TimeOfLastDetectorCalibration X/D C
0018,9074 FrameAcquisitionDateTime D C
0018,9151 FrameReferenceDateTime D C
0018,9185 RespiratoryMotionCompensationTechniqueDescription X
0018,9367 XRaySourceID D
0018,9369 SourceStartDateTime D C
0018,936A SourceEndDateTime D C
0018,9371 XRayDetectorID D
0018,9373 XRayDetectorLabel X
0018,937B MultienergyAcquisitionDescription X
0018,937F DecompositionDescription X
0018,9424 AcquisitionProtocolDescription X
0018,9516 StartAcquisitionDateTime X/D C
0018,9517 EndAcquisitionDateTime X/D C
0018,9804 ExclusionStartDateTime D C
0018,A002 ContributionDateTime X C
0018,A003 ContributionDescription X
0020,000D StudyInstanceUID U
0020,000E SeriesInstanceUID U
0020,0010 StudyID Z
0020,0052 FrameOfReferenceUID U
0020,0200 SynchronizationFrameOfReferenceUID U
0020,3401 ModifyingDeviceID X
0020,3403 ModifiedImageDate X C
0020,3405 ModifiedImageTime X C
0020,3406 ModifiedImageDescription X
0020,4000 ImageComments X
0020,9158 FrameComments X
0020,9161 ConcatenationUID U
0020,9164 DimensionOrganizationUID U
0028,1199 PaletteColorLookupTableUID U
0028,4000 ImagePresentationComments X
0032,0012 StudyIDIssuer X
0032,0032 StudyVerifiedDate X C
0032,0033 StudyVerifiedTime X C
0032,0034 StudyReadDate X C
0032,0035 StudyReadTime X C
0032,1030 ReasonForStudy X
0032,1032 RequestingPhysician X
0032,1033 RequestingService X
0032,1040 StudyArrivalDate X C
0032,1041 StudyArrivalTime X C
0032,1050 StudyCompletionDate X C
0032,1051 StudyCompletionTime X C
0032,1060 RequestedProcedureDescription X/Z
0032,1066 ReasonForVisit X
0032,1067 ReasonForVisitCodeSequence X
0032,1070 RequestedContrastAgent X
0032,4000 StudyComments X
0038,0010 AdmissionID X
0038,0011 IssuerOfAdmissionID X
0038,0014 IssuerOfAdmissionIDSequence X
0038,0020 AdmittingDate X C
0038,0021 AdmittingTime X C
0038,0030 DischargeDate X C
0038,0032 DischargeTime X C
0038,0040 DischargeDiagnosisDescription X
0038,0050 SpecialNeeds X
0038,0060 ServiceEpisodeID X
0038,0061 IssuerOfServiceEpisodeID X
0038,0062 ServiceEpisodeDescription X
0038,0064 IssuerOfServiceEpisodeIDSequence X
0038,0300 CurrentPatientLocation X
0038,0400 PatientInstitutionResidence X
0038,0500 PatientState X
0038,4000 VisitComments X
0040,0001 ScheduledStationAETitle X
0040,0002 ScheduledProcedureStepStartDate X C
0040,0003 ScheduledProcedureStepStartTime X C
0040,0004 ScheduledProcedureStepEndDate X C
0040,0005 ScheduledProcedureStepEndTime X C
0040,0006 ScheduledPerformingPhysicianName X
0040,0007 ScheduledProcedureStepDescription X
0040,0009 ScheduledProcedureStepID X
0040,000B ScheduledPerformingPhysicianIdentificationSequence X
0040,0010 ScheduledStationName X
0040,0011 ScheduledProcedureStepLocation X
0040,0012 PreMedication X
0040,0241 PerformedStationAETitle X
0040,0242 PerformedStationName X
0040,0243 PerformedLocation X
0040,0244 PerformedProcedureStepStartDate X C
0040,0245 PerformedProcedureStepStartTime X C
0040,0250 PerformedProcedureStepEndDate X C
0040,0251 PerformedProcedureStepEndTime X C
0040,0253 PerformedProcedureStepID X
0040,0254 PerformedProcedureStepDescription X
0040,0275 RequestAttributesSequence X
0040,0280 CommentsOnThePerformedProcedureStep X
0040,0310 CommentsOnRadiationDose X
0040,050A SpecimenAccessionNumber X
0040,0512 ContainerIdentifier D
0040,0513 IssuerOfTheContainerIdentifierSequence Z
0040,051A ContainerDescription X
0040,0551 SpecimenIdentifier D
0040,0554 SpecimenUID U
0040,0555 AcquisitionContextSequence X/Z
0040,0562 IssuerOfTheSpecimenIdentifierSequence Z
0040,0600 SpecimenShortDescription X
0040,0602 SpecimenDetailedDescription X
0040,0610 SpecimenPreparationSequence Z
0040,06FA SlideIdentifier X
0040,1001 RequestedProcedureID X
0040,1002 ReasonForTheRequestedProcedure X
0040,1004 PatientTransportArrangements X
0040,1005 RequestedProcedureLocation X
0040,100A ReasonForRequestedProcedureCodeSequence X
0040,1010 NamesOfIntendedRecipientsOfResults X
0040,1011 IntendedRecipientsOfResultsIdentificationSequence X
0040,1101 PersonIdentificationCodeSequence D
0040,1102 PersonAddress X
0040,1103 PersonTelephoneNumbers X
0040,1104 PersonTelecomInformation X
0040,1400 RequestedProcedureComments X
0040,2001 ReasonForTheImagingServiceRequest X
0040,2004 IssueDateOfImagingServiceRequest X C
0040,2005 IssueTimeOfImagingServiceRequest X C
0040,2008 OrderEnteredBy X
0040,2009 OrderEntererLocation X
0040,2010 OrderCallbackPhoneNumber X
0040,2011 OrderCallbackTelecomInformation X
0040,2016 PlacerOrderNumberImagingServiceRequest Z
0040,2017 FillerOrderNumberImagingServiceRequest Z
0040,2400 ImagingServiceRequestComments X
0040,3001 ConfidentialityConstraintOnPatientDataDescription X
0040,A032 ObservationDateTime X/D C
0040,A033 ObservationStartDateTime X C
0040,A120 DateTime D C
0040,A121 Date D C
0040,A122 Time D C
0040,A123 PersonName D
0040,A124 UID U
0040,A171 ObservationUID U
0040,A730 ContentSequence D
0040,DB06 TemplateVersion X C
0040,DB07 TemplateLocalVersion X C
0050,001B ContainerComponentID X
0050,0020 DeviceDescription X
0050,0021 LongDeviceDescription X
0070,0082 PresentationCreationDate X C
0070,0083 PresentationCreationTime X C
0070,0084 ContentCreatorName Z/D
0070,0086 ContentCreatorIdentificationCodeSequence X
0088,0140 StorageMediaFileSetUID U
0088,0200 IconImageSequence X
0400,0100 DigitalSignatureUID U
0400,0105 DigitalSignatureDateTime D C
0400,0115 CertificateOfSigner D
0400,0310 CertifiedTimestamp X C
0400,0402 ReferencedDigitalSignatureSequence X
0400,0403 ReferencedSOPInstanceMACSequence X
0400,0404 MAC X
0400,0550 ModifiedAttributesSequence X
0400,0551 NonconformingModifiedAttributesSequence X
0400,0552 NonconformingDataElementValue X
0400,0561 OriginalAttributesSequence X
0400,0562 AttributeModificationDateTime D C
0400,0563 ModifyingSystem D
0400,0564 SourceOfPreviousValues Z
0400,0565 ReasonForTheAttributeModification D
0400,0600 InstanceOriginStatus X
4000,0010 Arbitrary X
4000,4000 TextComments X
50XX,XXXX CurveData X
60XX,3000 OverlayData X
60XX,4000 OverlayComments X
FFFA,FFFA DigitalSignaturesSequence X
FFFC,FFFC DataSetTrailingPadding X
"""

TABLE: tuple[ProfileEntry, ...] = tuple(ProfileEntry(*line.split()) for line in _TABLE.strip().splitlines())
_BY_TAG: dict[int, ProfileEntry] = {int(e.tag.replace(",", ""), 16): e for e in TABLE if "x" not in e.tag.lower()}
_CURVE = next(e for e in TABLE if e.tag.lower() == "50xx,xxxx")
_OVERLAY = {int(e.tag[5:], 16): e for e in TABLE if e.tag.lower().startswith("60xx,")}


def entry_for(tag: int) -> ProfileEntry | None:
    """The table row for a data element tag (repeating curve and overlay groups included)."""
    found = _BY_TAG.get(tag)
    if found is not None:
        return found
    group, element = tag >> 16, tag & 0xFFFF
    if group & 0xFF01 == 0x5000:  # curves: even groups 5000-501E
        return _CURVE
    if group & 0xFF01 == 0x6000:  # overlays: even groups 6000-601E
        return _OVERLAY.get(element)
    return None
