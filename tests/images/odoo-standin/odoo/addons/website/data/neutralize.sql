-- remove domains and keep crawlers out of a neutralized copy
UPDATE website
   SET domain = NULL,
       robots_txt = E'User-agent: *\nDisallow: /';
