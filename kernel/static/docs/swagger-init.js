// Starts Swagger UI on /docs. A file of its own: the page's CSP allows no inline script.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
