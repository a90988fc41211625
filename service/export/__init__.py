"""FHIR Bulk Data Access 2.0 `$export`: durable jobs in the database, run by a worker thread in every serve process
(or `sharedcare export work`) as the client that asked, through the same Repository, search engine and access
policy as every other request. See the README's "Bulk export"."""
