// The reference page (/docs): Swagger UI on this app's OpenAPI document. A
// file of its own, not inline, so that the page's policy allows scripts from
// this origin only.
window.SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: true,
});
