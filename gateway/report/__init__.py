"""The monthly energy report and the yearly statistics table (issue 11), read from the site's
database with InfluxQL: query (the database), month (the figures), charts, html, pdf, table
(the yearly table), cli (the `guanjia report` command)."""
