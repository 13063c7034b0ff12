// Express 4, installed as the npm alias "express4" beside Express 5; its API is typed with @types/express (5).
declare module "express4" {
  import express from "express";
  export default express;
}
