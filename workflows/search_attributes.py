"""The custom search attributes operators filter runs by. Registered on the server at start-up."""

from temporalio.common import SearchAttributeKey

COMPANY_ID = SearchAttributeKey.for_keyword("CompanyId")
CONNECTION_ID = SearchAttributeKey.for_keyword("ConnectionId")
PROVIDER = SearchAttributeKey.for_keyword("Provider")
MAIL_STATUS = SearchAttributeKey.for_keyword("MailStatus")

ALL = [COMPANY_ID, CONNECTION_ID, PROVIDER, MAIL_STATUS]
