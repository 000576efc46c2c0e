"""The custom search attributes operators filter runs by. Registered on the server at start-up.

Light (temporalio only): workflows set them from inside the sandbox, the API and the receiver
at start, `recruitmail dev` and compose register them."""

from temporalio.common import SearchAttributeKey

COMPANY_ID = SearchAttributeKey.for_keyword("CompanyId")
CONNECTION_ID = SearchAttributeKey.for_keyword("ConnectionId")
PROVIDER = SearchAttributeKey.for_keyword("Provider")
MAIL_STATUS = SearchAttributeKey.for_keyword("MailStatus")

ALL = [COMPANY_ID, CONNECTION_ID, PROVIDER, MAIL_STATUS]
